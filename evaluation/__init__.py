"""Evaluation: the quality protocol against classical and learned anchors, the robustness sweep and the colour report."""
