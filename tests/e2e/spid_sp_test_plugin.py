"""spid-sp-test authn plugin: the SP's public https origin is the gateway on this machine.

The one mapping it makes: spid-sp-test posts each crafted Response to the ACS Location of the SP
metadata, which is https without a port (as SPID requires): `SPID_SP_TEST_PUBLIC` (e.g.
https://sportello.comune.cremona.it). In production a TLS front forwards that origin to the
gateway; here this plugin does the front's job and posts to the same path on `SPID_SP_TEST_LOCAL`
(the running gateway, http://127.0.0.1:<port>). Nothing else is changed: the AuthnRequest comes
from the --authn-url as given, the body and form are posted as the tool built them, and an ACS
outside the public origin is an error rather than a request sent elsewhere.

Loaded inside spid-sp-test's own virtualenv with this folder on PYTHONPATH, so it imports only the
stdlib, and no module here may shadow a stdlib name (tests/support/platform.py would).
"""

import os


class Rewrite:
    def __init__(self, requests_session, authn_request_url, *args, **kwargs):
        self.session = requests_session
        self.authn_request_url = authn_request_url

    def request(self):
        return self.authn_request_url

    def response(self, url, data=None, **kwargs):
        local = os.environ["SPID_SP_TEST_LOCAL"].rstrip("/")
        public = os.environ["SPID_SP_TEST_PUBLIC"].rstrip("/")
        if not url.startswith(public + "/"):
            raise ValueError(f"ACS {url!r} is not under the SP's public origin {public!r}")
        return self.session.post(local + url[len(public):], data=data or {}, allow_redirects=True)
