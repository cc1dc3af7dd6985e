"""Scoring against references: segmentations (Dice, HD95, surface Dice, volumes), reports (field-level
agreement, contradictions, text metrics) and answers to questions."""
