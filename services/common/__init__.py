"""Small pieces shared by the HTTP services (api, botapi)."""
