//! Tool executor actor for liveagent: typed tools, human-in-the-loop approval, dependencies, middleware, and handoff to a turn-based Agent.
