"""The model: the forward physics, the empirical state, the emissivity model and the observation operator."""
