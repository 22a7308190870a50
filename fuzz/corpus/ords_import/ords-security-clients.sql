-- The same with the ORDS_SECURITY package (ORDS 23.3 and later): REGISTER_CLIENT called as a
-- function, its secret left for ORDS to generate, and the credentials printed.
--   ords-guard import ords config/ords-import/ords-security-clients.sql > registry.yaml
-- ORDS cannot export a secret, so ords-guard generates a new one: it is printed once, on
-- stderr, beside the new client_id.

DECLARE
  l_roles    owa.vc_arr;
  l_patterns owa.vc_arr;
BEGIN
  l_roles(1)    := 'orders_api';
  l_patterns(1) := '/orders/*';
  l_patterns(2) := '/customers/*';
  ORDS.DEFINE_PRIVILEGE(
    p_privilege_name => 'orders.priv',
    p_roles          => l_roles,
    p_patterns       => l_patterns,
    p_label          => 'Orders API');
  COMMIT;
END;
/

DECLARE
  l_client_cred ords_types.t_client_credentials;
BEGIN
  l_client_cred := ORDS_SECURITY.REGISTER_CLIENT(
      p_name            => 'ERP Integration',
      p_grant_type      => 'client_credentials',
      p_description     => 'The ERP''s nightly order sync',
      p_client_secret   => ords_types.oauth_client_secret(p_secret => NULL),
      p_support_email   => 'erp@example.com',
      p_privilege_names => 'orders.priv',
      p_token_duration  => 1800);
  ORDS_SECURITY.GRANT_CLIENT_ROLE(
      p_client_name => 'ERP Integration',
      p_role_name   => 'orders_api');
  COMMIT;
  DBMS_OUTPUT.PUT_LINE('client_id: ' || l_client_cred.client_key.client_id);
END;
/
