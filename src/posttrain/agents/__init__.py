"""Agents: environments, tools and multi-turn episodes (seed 003, RL for computer-use agents)."""
