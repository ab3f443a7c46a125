"""The brains behind the planner and evaluator roles: llm, tpe, random, hybrid, replay."""
