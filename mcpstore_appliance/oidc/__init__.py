"""OpenID Connect sign-in: the appliance as a relying party of an org's IdP or of one site-wide provider.

`idtoken.py` checks ID tokens, `provider.py` speaks to the provider (discovery, JWKS, token exchange),
`configs.py` holds an org's settings (client secret sealed), `people.py` signs the person in (just-in-time
accounts, roles from groups), `service.py` runs the flow. `build.py` is what app.py's build_services calls.
"""
