-- The ORDS "protect a service" tutorial as a script: a role, a privilege mapped to two
-- patterns, a client_credentials client and its role, with the OAUTH package (ORDS before
-- 24.3). Positional arguments and named ones both occur, as in hand-written scripts.
--   ords-guard import ords config/ords-import/oauth-clients.sql > registry.yaml

set define off
whenever sqlerror exit failure rollback

begin
  ords.create_role('hr_reader');
  ords.create_privilege(
      p_name        => 'hr_read',
      p_role_name   => 'hr_reader',
      p_label       => 'HR reader',
      p_description => 'Reads employees and departments');
  ords.create_privilege_mapping('hr_read', '/employees/*');
  ords.create_privilege_mapping(
      p_privilege_name => 'hr_read',
      p_pattern        => '/departments/*');
  commit;
end;
/

begin
  oauth.create_client(
      p_name            => 'Payroll Batch',
      p_grant_type      => 'client_credentials',
      p_owner           => 'Payroll',
      p_description     => 'Nightly payroll export',
      p_support_email   => 'payroll@example.com',
      p_privilege_names => 'hr_read');
  -- Roles granted to the client, then one taken back again.
  oauth.grant_client_role('Payroll Batch', 'hr_reader');
  oauth.grant_client_role('Payroll Batch', 'hr_writer');
  oauth.revoke_client_role('Payroll Batch', 'hr_writer');
  commit;
end;
/
