-- An ORDS REST export of the HR schema's example module (as ORDS_EXPORT.EXPORT_SCHEMA or
-- SQL Developer writes one), with the privilege that protects the module and the client
-- that calls it. Import it:
--   ords-guard import ords config/ords-import/hr-module-export.sql > registry.yaml
-- Handlers, templates and the schema's URL mapping are not security: they are reported as
-- skipped, and the backend behind ords-guard keeps serving those URLs itself.

BEGIN
  ORDS.ENABLE_SCHEMA(
      p_enabled             => TRUE,
      p_schema              => 'HR',
      p_url_mapping_type    => 'BASE_PATH',
      p_url_mapping_pattern => 'hr',
      p_auto_rest_auth      => FALSE);

  ORDS.DEFINE_MODULE(
      p_module_name    => 'hr.example',
      p_base_path      => '/example/',
      p_items_per_page => 25,
      p_status         => 'PUBLISHED',
      p_comments       => NULL);

  ORDS.DEFINE_TEMPLATE(
      p_module_name    => 'hr.example',
      p_pattern        => 'employees/',
      p_priority       => 0,
      p_etag_type      => 'HASH',
      p_etag_query     => NULL,
      p_comments       => NULL);

  ORDS.DEFINE_HANDLER(
      p_module_name    => 'hr.example',
      p_pattern        => 'employees/',
      p_method         => 'GET',
      p_source_type    => 'json/collection',
      p_items_per_page => 25,
      p_mimes_allowed  => '',
      p_comments       => NULL,
      p_source         =>
'SELECT empno, ename, job FROM emp WHERE ename <> ''KING'' ORDER BY empno'
      );

  ORDS.CREATE_ROLE(p_role_name => 'example_role');

  DECLARE
    l_roles     OWA.VC_ARR;
    l_modules   OWA.VC_ARR;
    l_patterns  OWA.VC_ARR;
  BEGIN
    l_roles(1)    := 'example_role';
    l_modules(1)  := 'hr.example';
    l_patterns(1) := '/reports/*';
    ORDS.DEFINE_PRIVILEGE(
        p_privilege_name => 'example_priv',
        p_roles          => l_roles,
        p_patterns       => l_patterns,
        p_modules        => l_modules,
        p_label          => 'Example',
        p_description    => 'Privilege for example REST service',
        p_comments       => NULL);
  END;

  /* The module's consumer, registered with the export. */
  OAUTH.CREATE_CLIENT(
      p_name            => 'Example Client',
      p_grant_type      => 'client_credentials',
      p_owner           => 'Example Inc.',
      p_description     => 'Sample for demonstration',
      p_support_email   => 'support@example.com',
      p_privilege_names => 'example_priv');
  OAUTH.GRANT_CLIENT_ROLE(
      p_client_name => 'Example Client',
      p_role_name   => 'example_role');

  COMMIT;
END;
/
