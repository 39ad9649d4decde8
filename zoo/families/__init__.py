"""One module per model family; each registers itself with
``odml.zoo.registry.register_family``. Every module here is imported when the
registry is first used, so a new kind of model is one new file here."""
