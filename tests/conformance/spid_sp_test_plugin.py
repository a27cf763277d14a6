"""spid-sp-test authn plugin: the SP's public https URLs are served by the local test server.

spid-sp-test posts its crafted Responses to the ACS Location of the metadata (https, no port, as
SPID requires); this plugin sends them to the same path on SPID_SP_TEST_LOCAL instead.
Loaded inside spid-sp-test's own virtualenv (PYTHONPATH), so it imports only what that has.
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
        return self.session.post(url.replace(public, local, 1), data=data or {}, allow_redirects=True)
