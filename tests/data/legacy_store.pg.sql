--
-- PostgreSQL database dump
--

\restrict zhQy3XP3pb5rGG49Mtf0B3meIeJ1DnbEHzpXXUk5eVGH6dRZJfjoy7jd7XlDrKR

-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: brace_legacy; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA brace_legacy;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: api_keys; Type: TABLE; Schema: brace_legacy; Owner: -
--

CREATE TABLE brace_legacy.api_keys (
    id text NOT NULL,
    key_hash text NOT NULL,
    prefix text NOT NULL,
    name text NOT NULL,
    team text,
    models text,
    rpm bigint,
    tpm bigint,
    priority text,
    budgets text,
    metadata text,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    expires_at double precision,
    revoked_at double precision
);


--
-- Name: attempts; Type: TABLE; Schema: brace_legacy; Owner: -
--

CREATE TABLE brace_legacy.attempts (
    request_id text NOT NULL,
    seq integer NOT NULL,
    deployment text NOT NULL,
    grp text NOT NULL,
    provider text NOT NULL,
    "offset" double precision NOT NULL,
    duration double precision NOT NULL,
    error_class text,
    status integer,
    hedge integer DEFAULT 0 NOT NULL,
    error text,
    retry_delay double precision
);


--
-- Name: brace_migrations; Type: TABLE; Schema: brace_legacy; Owner: -
--

CREATE TABLE brace_legacy.brace_migrations (
    name text NOT NULL,
    applied_at double precision NOT NULL
);


--
-- Name: instances; Type: TABLE; Schema: brace_legacy; Owner: -
--

CREATE TABLE brace_legacy.instances (
    instance_id text NOT NULL,
    seen_version bigint NOT NULL,
    heartbeat_at double precision NOT NULL
);


--
-- Name: key_changes; Type: TABLE; Schema: brace_legacy; Owner: -
--

CREATE TABLE brace_legacy.key_changes (
    id integer NOT NULL,
    version bigint NOT NULL
);


--
-- Name: requests; Type: TABLE; Schema: brace_legacy; Owner: -
--

CREATE TABLE brace_legacy.requests (
    request_id text NOT NULL,
    trace_id text NOT NULL,
    span_id text NOT NULL,
    parent_span_id text,
    started_at double precision NOT NULL,
    duration double precision NOT NULL,
    status integer NOT NULL,
    operation text NOT NULL,
    model text NOT NULL,
    grp text,
    deployment text,
    provider text,
    response_model text,
    error_class text,
    error text,
    stream integer DEFAULT 0 NOT NULL,
    ttft double precision,
    queue_wait double precision,
    input_tokens bigint,
    output_tokens bigint,
    cached_tokens bigint,
    reasoning_tokens bigint,
    cost_usd double precision,
    finish_reasons text,
    fallback text,
    hedged integer DEFAULT 0 NOT NULL,
    priority text,
    tenant text,
    client_disconnected integer DEFAULT 0 NOT NULL,
    attempts_count integer DEFAULT 0 NOT NULL,
    absorbed integer DEFAULT 0 NOT NULL,
    content text
);


--
-- Name: spend; Type: TABLE; Schema: brace_legacy; Owner: -
--

CREATE TABLE brace_legacy.spend (
    scope text NOT NULL,
    period text NOT NULL,
    spent_usd double precision DEFAULT 0 NOT NULL,
    requests bigint DEFAULT 0 NOT NULL,
    updated_at double precision NOT NULL
);


--
-- Name: teams; Type: TABLE; Schema: brace_legacy; Owner: -
--

CREATE TABLE brace_legacy.teams (
    team text NOT NULL,
    budgets text,
    updated_at double precision NOT NULL
);


--
-- Data for Name: api_keys; Type: TABLE DATA; Schema: brace_legacy; Owner: -
--

INSERT INTO brace_legacy.api_keys VALUES ('key_legacy1', 'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff', 'sk-brace-abc', 'ci', 'ml', '["claude","gpt"]', 60, 10000, 'batch', '[{"period":"day","limit_usd":5.0,"mode":"hard"},{"period":"total","limit_usd":100.0,"mode":"soft"}]', '{"owner":"ana"}', 1714596400, 1714596400, NULL, NULL);
INSERT INTO brace_legacy.api_keys VALUES ('key_legacy2', 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee', 'sk-brace-def', 'old', NULL, NULL, NULL, NULL, NULL, '[]', '{}', 1714592800, 1714599900, NULL, 1714599900);


--
-- Data for Name: attempts; Type: TABLE DATA; Schema: brace_legacy; Owner: -
--

INSERT INTO brace_legacy.attempts VALUES ('legacy-0001', 0, 'gpt-a', 'gpt', 'openai', 0, 0.1, 'rate_limited', 429, 0, NULL, NULL);
INSERT INTO brace_legacy.attempts VALUES ('legacy-0001', 1, 'claude-a', 'claude', 'anthropic', 0.4, 0.8, NULL, 200, 0, NULL, NULL);
INSERT INTO brace_legacy.attempts VALUES ('legacy-0002', 0, 'emb-1', 'embed', 'openai', 0, 0.2, 'server_error', 502, 0, NULL, NULL);


--
-- Data for Name: brace_migrations; Type: TABLE DATA; Schema: brace_legacy; Owner: -
--

INSERT INTO brace_legacy.brace_migrations VALUES ('0001_requests', 1796234675.7123318);
INSERT INTO brace_legacy.brace_migrations VALUES ('0002_attempts', 1796234675.7150314);
INSERT INTO brace_legacy.brace_migrations VALUES ('0003_keys', 1796234675.7223344);
INSERT INTO brace_legacy.brace_migrations VALUES ('0004_spend', 1796234675.7243943);
INSERT INTO brace_legacy.brace_migrations VALUES ('0005_fewer_indexes', 1796234675.7252007);
INSERT INTO brace_legacy.brace_migrations VALUES ('0006_attempt_retry_delay', 1796234675.7257054);


--
-- Data for Name: instances; Type: TABLE DATA; Schema: brace_legacy; Owner: -
--

INSERT INTO brace_legacy.instances VALUES ('gw-1', 3, 1714599990);


--
-- Data for Name: key_changes; Type: TABLE DATA; Schema: brace_legacy; Owner: -
--

INSERT INTO brace_legacy.key_changes VALUES (1, 3);


--
-- Data for Name: requests; Type: TABLE DATA; Schema: brace_legacy; Owner: -
--

INSERT INTO brace_legacy.requests VALUES ('legacy-0001', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbb', NULL, 1714599940, 1.2, 200, 'chat', 'gpt', 'claude', 'claude-a', 'anthropic', NULL, NULL, NULL, 0, NULL, NULL, 12, 3, NULL, NULL, 0.0002, '["stop"]', '["gpt","claude"]', 0, NULL, NULL, 0, 2, 1, '{"messages":[{"role":"user","content":"hi"}]}');
INSERT INTO brace_legacy.requests VALUES ('legacy-0002', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'cccccccccccccccc', NULL, 1714599970, 0.2, 502, 'embeddings', 'embed', 'embed', 'emb-1', 'openai', NULL, 'server_error', 'upstream 502', 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, 0, 1, 0, NULL);


--
-- Data for Name: spend; Type: TABLE DATA; Schema: brace_legacy; Owner: -
--

INSERT INTO brace_legacy.spend VALUES ('key:key_legacy1', 'total', 0.25, 3, 1714599995);
INSERT INTO brace_legacy.spend VALUES ('team:ml', 'day:2024-05-01', 0.125, 2, 1714599995);


--
-- Data for Name: teams; Type: TABLE DATA; Schema: brace_legacy; Owner: -
--

INSERT INTO brace_legacy.teams VALUES ('ml', '[{"period":"day","limit_usd":5.0,"mode":"hard"}]', 1714599950);


--
-- Name: api_keys api_keys_key_hash_key; Type: CONSTRAINT; Schema: brace_legacy; Owner: -
--

ALTER TABLE ONLY brace_legacy.api_keys
    ADD CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash);


--
-- Name: api_keys api_keys_pkey; Type: CONSTRAINT; Schema: brace_legacy; Owner: -
--

ALTER TABLE ONLY brace_legacy.api_keys
    ADD CONSTRAINT api_keys_pkey PRIMARY KEY (id);


--
-- Name: attempts attempts_pkey; Type: CONSTRAINT; Schema: brace_legacy; Owner: -
--

ALTER TABLE ONLY brace_legacy.attempts
    ADD CONSTRAINT attempts_pkey PRIMARY KEY (request_id, seq);


--
-- Name: brace_migrations brace_migrations_pkey; Type: CONSTRAINT; Schema: brace_legacy; Owner: -
--

ALTER TABLE ONLY brace_legacy.brace_migrations
    ADD CONSTRAINT brace_migrations_pkey PRIMARY KEY (name);


--
-- Name: instances instances_pkey; Type: CONSTRAINT; Schema: brace_legacy; Owner: -
--

ALTER TABLE ONLY brace_legacy.instances
    ADD CONSTRAINT instances_pkey PRIMARY KEY (instance_id);


--
-- Name: key_changes key_changes_pkey; Type: CONSTRAINT; Schema: brace_legacy; Owner: -
--

ALTER TABLE ONLY brace_legacy.key_changes
    ADD CONSTRAINT key_changes_pkey PRIMARY KEY (id);


--
-- Name: requests requests_pkey; Type: CONSTRAINT; Schema: brace_legacy; Owner: -
--

ALTER TABLE ONLY brace_legacy.requests
    ADD CONSTRAINT requests_pkey PRIMARY KEY (request_id);


--
-- Name: spend spend_pkey; Type: CONSTRAINT; Schema: brace_legacy; Owner: -
--

ALTER TABLE ONLY brace_legacy.spend
    ADD CONSTRAINT spend_pkey PRIMARY KEY (scope, period);


--
-- Name: teams teams_pkey; Type: CONSTRAINT; Schema: brace_legacy; Owner: -
--

ALTER TABLE ONLY brace_legacy.teams
    ADD CONSTRAINT teams_pkey PRIMARY KEY (team);


--
-- Name: api_keys_team; Type: INDEX; Schema: brace_legacy; Owner: -
--

CREATE INDEX api_keys_team ON brace_legacy.api_keys USING btree (team);


--
-- Name: requests_started_at; Type: INDEX; Schema: brace_legacy; Owner: -
--

CREATE INDEX requests_started_at ON brace_legacy.requests USING btree (started_at, request_id);


--
-- Name: requests_trace_id; Type: INDEX; Schema: brace_legacy; Owner: -
--

CREATE INDEX requests_trace_id ON brace_legacy.requests USING btree (trace_id);


--
-- PostgreSQL database dump complete
--

\unrestrict zhQy3XP3pb5rGG49Mtf0B3meIeJ1DnbEHzpXXUk5eVGH6dRZJfjoy7jd7XlDrKR

