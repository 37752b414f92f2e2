mod agent;
mod support;
