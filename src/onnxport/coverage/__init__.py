"""The (model_type, task) coverage matrix (`runner`) and the support tables built from it."""
