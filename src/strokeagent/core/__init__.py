"""The core: the typed state, the stage protocols, policies and their loop, the registry and the image store.

Nothing here imports a stage kind, a backend or a run folder: everything else imports the core.
"""
