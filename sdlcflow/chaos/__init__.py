"""The chaos suite: run the coordinator, audit sink and agents on private servers, break
things on a seeded schedule, and check the invariants from the outside (`sdlcflow chaos run`).
"""
