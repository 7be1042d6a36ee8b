"""Online RL plumbing shared by GRPO, RLOO, REINFORCE and PPO: experience and where it comes from."""
