"""What every service shares: settings, database, auth and tenancy, the bus, clocks."""
