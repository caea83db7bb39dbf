"""Sign-in: the OAuth 2.0 authorization server Claude Code's `/login` speaks, and the OIDC client side.

Modules are named after the RFC they implement where one applies:
`rfc8414` discovery, `rfc8628` device authorization and the device grant,
`rfc7009` revocation, `tokens` the token endpoint and refresh tokens,
`verification` the browser page at /device, `idp` the OIDC client (authlib),
`identity` claims, groups and the allow gates, `crypto` hashing and sealing.
"""
