"""Runtime helpers shared by every service: settings, logging, Kafka clients, the embedded
broker, the throwaway Postgres used by tests, and the `mbc` command line."""
