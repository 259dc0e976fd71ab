"""latent-spectra services: the geometry core (pure computation), the store (the only SQL),
and the job pipeline that joins them. The worker and the API are thin layers over these."""
