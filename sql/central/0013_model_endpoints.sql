-- Model endpoints the owner added in the app, besides the ones configured in the environment.
-- An agent uses one when its `provider` is the endpoint's id. The key never leaves the host:
-- the API shows only whether there is one.
CREATE TABLE model_endpoints (
  id            TEXT PRIMARY KEY,
  name          TEXT NOT NULL,
  kind          TEXT NOT NULL CHECK (kind IN ('anthropic', 'openai')),
  base_url      TEXT NOT NULL,
  api_key       TEXT,
  default_model TEXT,
  created_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX model_endpoints_name ON model_endpoints (name COLLATE NOCASE);
