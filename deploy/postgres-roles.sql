-- PostgreSQL roles of a production store (docs/deployment.md, "PostgreSQL roles").
--
-- Run once per database, after the writer has created the schema (the first `python -m analytics
-- load`, `refresh` or `demo` as the writer creates every table), as a superuser or the database owner:
--
--   psql -v ON_ERROR_STOP=1 -d bank -f deploy/postgres-roles.sql
--   psql -d bank -c '\password insight_writer'    -- then the same for insight_app
--
-- insight_writer: `load`, `refresh`, `digest`, `audit prune`, `approvals expire`, `backup`/`restore`
--                 (the timers of deploy/insight-refresh.service). Owns and writes every table.
-- insight_app:    the dashboard. Reads everything; never writes customer data, imported data or
--                 refresh results. It writes only what the dashboard itself records: the audit log
--                 (insert only: no update, no delete), its users' logins, sessions, two-factor
--                 enrolment and preferences, four-eyes requests and export manifests, worklist alert
--                 status and campaigns planned on the Campaigns page.
--
-- psql variables name the roles (defaults below); tests/test_deploy.py runs this file with others.
\if :{?app_role}
\else
\set app_role insight_app
\endif
\if :{?writer_role}
\else
\set writer_role insight_writer
\endif

SELECT format('CREATE ROLE %I LOGIN', :'writer_role')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'writer_role') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'app_role')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_role') \gexec

-- Nobody else may create objects in the schema; the writer creates and owns the tables.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO :"writer_role";
GRANT USAGE ON SCHEMA public TO :"app_role";

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES ON ALL TABLES IN SCHEMA public TO :"writer_role";
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO :"writer_role";

-- The app reads every table ...
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"app_role";
-- ... appends to the audit log and nothing more there ...
GRANT INSERT ON audit_log TO :"app_role";
-- ... and keeps what the dashboard itself records.
GRANT INSERT, UPDATE, DELETE ON users, user_sessions, user_mfa, user_mfa_recovery, user_preferences,
    approval_requests, export_manifests, export_manifest_customers, alerts, alert_history,
    campaigns, campaign_members TO :"app_role";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO :"app_role";

-- Tables the writer creates later (a new version's schema) are readable by the app too.
ALTER DEFAULT PRIVILEGES FOR ROLE :"writer_role" IN SCHEMA public GRANT SELECT ON TABLES TO :"app_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"writer_role" IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO :"app_role";
