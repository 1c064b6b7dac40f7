"""Cloud providers behind one interface (`provision.providers.base.Provider`)."""
