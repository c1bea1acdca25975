//! Transfer, close and the supervisor's views over HTTP, with the agents'
//! WebSockets hearing of each change.
