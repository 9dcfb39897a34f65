vcl 4.1;

# Varnish in front of Conveyor (Varnish 7.1 with varnish-modules' xkey, as in Debian bookworm).
# docs/operations.md, "Varnish in front of Conveyor", explains how to run it. Everything that differs per
# deployment (the backend, who may purge) lives in conveyor-backend.vcl, found on varnishd's vcl_path,
# so this file is used as shipped; the tests (test/cdn/varnish.test.ts) run exactly this file.
#
# Caching is Conveyor's decision: its Cache-Control says what a shared cache may keep and for how long
# (s-maxage for latest URLs, a year and `immutable` for versions, `private, no-store` for private
# content, s-maxage for 404s). This VCL adds no TTLs of its own and leaves storage decisions to the
# built-in VCL, which every sub below falls through to unless it returns.

import xkey;
import purge;

# Must define `backend conveyor` and `acl purgers` (see conveyor-backend.vcl.example).
include "conveyor-backend.vcl";

sub vcl_recv {
  if (req.method == "PURGE") {
    if (client.ip !~ purgers) {
      return (synth(403, "Forbidden"));
    }
    # Tag purge (vmod_xkey): every object whose `xkey` response header carried one of the listed tags
    # (separated by spaces), whatever its URL. `xkey-softpurge` keeps the objects for grace and
    # conditional revalidation instead of dropping them. `xkey-purge` wins when both are sent.
    if (req.http.xkey-purge) {
      set req.http.xkey-purged = xkey.purge(req.http.xkey-purge);
      return (synth(200, "Purged"));
    }
    if (req.http.xkey-softpurge) {
      set req.http.xkey-purged = xkey.softpurge(req.http.xkey-softpurge);
      return (synth(200, "Purged"));
    }
    # URL purge: looked up like a GET (same Host and URL) so that vcl_hit/vcl_miss can count the
    # variants they remove.
    return (hash);
  }

  # WebSockets (job events) go straight through.
  if (req.http.Upgrade ~ "(?i)^websocket$") {
    return (pipe);
  }

  # Only delivery URLs are cacheable content; the API, uploads, health and metrics answer per caller
  # or per moment and always reach Conveyor.
  if (req.url !~ "^/[avt]/") {
    return (pass);
  }

  # Delivery answers no cookies; dropping them keeps the built-in VCL from passing every request of a
  # browser that carries cookies of the site's other pages.
  unset req.http.Cookie;

  # Private grants: an access token (`?token=`) or a signed URL (`?exp=&kid=&sig=`) unlocks one
  # caller's content, answered `private, no-store`. Passing them keeps them from ever being coalesced
  # with, or answered from, anyone else's request. Authorization is passed by the built-in VCL.
  if (req.url ~ "[?&](token|sig)=") {
    return (pass);
  }
}

sub vcl_pipe {
  if (req.http.Upgrade) {
    set bereq.http.Upgrade = req.http.Upgrade;
    set bereq.http.Connection = req.http.Connection;
  }
}

sub conveyor_purge_url {
  set req.http.xkey-purged = purge.hard();
  return (synth(200, "Purged"));
}

sub vcl_hit {
  if (req.method == "PURGE") {
    call conveyor_purge_url;
  }
}

sub vcl_miss {
  if (req.method == "PURGE") {
    call conveyor_purge_url;
  }
}

sub vcl_deliver {
  # Tags are for this cache only: clients never see them.
  unset resp.http.xkey;
  # For debugging, how this response was served: HIT from the cache (fresh or in grace), MISS fetched
  # from Conveyor and stored, PASS fetched from Conveyor and not stored (private grants, responses
  # Conveyor marks private/no-store, anything outside the delivery URLs).
  if (obj.hits > 0) {
    set resp.http.X-Cache = "HIT";
  } else if (obj.uncacheable) {
    set resp.http.X-Cache = "PASS";
  } else {
    set resp.http.X-Cache = "MISS";
  }
}

sub vcl_synth {
  if (req.method == "PURGE" && resp.status == 200) {
    # How many objects the purge removed (or soft-purged), for URL and tag purges alike.
    set resp.http.xkey-purged = req.http.xkey-purged;
    set resp.http.Content-Type = "text/plain; charset=utf-8";
    set resp.body = req.http.xkey-purged + {" purged
"};
    return (deliver);
  }
}
