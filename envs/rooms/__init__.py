"""Rooms: a first-person world (a raycast walk through a few connected rooms), with text and vector head motion."""
