"""The cost function J = J_o + J_b: each term as a pure function."""
