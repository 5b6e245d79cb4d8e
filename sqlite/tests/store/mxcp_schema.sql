-- The four CREATE TABLE statements of mxcp 0.12.3 (mxcp/sdk/auth/storage.py).
CREATE TABLE IF NOT EXISTS states (
    state TEXT PRIMARY KEY,
    client_id TEXT,
    redirect_uri TEXT,
    code_challenge TEXT,
    code_challenge_method TEXT,
    provider_code_verifier TEXT,
    client_state TEXT,
    provider_scopes_requested TEXT NOT NULL,
    expires_at REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS auth_codes (
    code TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    client_id TEXT,
    redirect_uri TEXT,
    code_challenge TEXT,
    code_challenge_method TEXT,
    mxcp_scopes TEXT NOT NULL,
    expires_at REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    access_token_hash TEXT PRIMARY KEY,
    access_token_encrypted TEXT NOT NULL,
    refresh_token_hash TEXT,
    refresh_token_encrypted TEXT,
    session_id TEXT NOT NULL UNIQUE,
    provider TEXT NOT NULL,
    user_info TEXT NOT NULL,
    provider_access_token TEXT,
    provider_refresh_token TEXT,
    provider_expires_at REAL,
    access_expires_at REAL,
    refresh_expires_at REAL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS oauth_clients (
    client_id TEXT PRIMARY KEY,
    client_secret TEXT,
    token_endpoint_auth_method TEXT,
    redirect_uris TEXT NOT NULL,
    grant_types TEXT NOT NULL,
    response_types TEXT NOT NULL,
    scope TEXT,
    client_name TEXT,
    created_at REAL NOT NULL
);
