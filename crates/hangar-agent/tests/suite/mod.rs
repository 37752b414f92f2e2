mod agent;
mod support;
mod web_fetch;
