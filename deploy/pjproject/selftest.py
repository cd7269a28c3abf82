"""Check of a pjsua2 module built by scripts/build-pjsua2 (also run in deploy/Dockerfile): it
imports, the library initialises with the null sound device and the full call limit, G.711, G.722
and Opus are among the codecs, a TLS transport opens and SRTP is there. Exits non-zero otherwise;
the last line printed is a one-line summary."""

import sys

import pjsua2 as pj

WANTED_CODECS = ("PCMU/8000", "PCMA/8000", "G722/16000", "opus/48000")
MIN_CALLS = 512


def main() -> int:
    problems = []
    # A fresh UaConfig carries the compiled-in PJSUA_MAX_CALLS; libInit clamps anything above it.
    max_calls = pj.UaConfig().maxCalls
    if max_calls < MIN_CALLS:
        problems.append(f"PJSUA_MAX_CALLS is {max_calls}, wanted at least {MIN_CALLS}")
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.maxCalls = max_calls
    cfg.logConfig.level = 1
    cfg.logConfig.consoleLevel = 1
    ep.libInit(cfg)
    ep.audDevManager().setNullDev()
    codecs = sorted(info.codecId for info in ep.codecEnum2())
    missing = [name for name in WANTED_CODECS if not any(c.startswith(name) for c in codecs)]
    if missing:
        problems.append("missing codecs: " + ", ".join(missing))
    tls = pj.TransportConfig()
    tls.port = 0
    try:
        ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tls)
        tls_state = "tls"
    except pj.Error as exc:
        tls_state = "no tls"
        problems.append(f"no TLS transport: {exc.info()}")
    try:
        suites = list(ep.srtpCryptoEnum())
    except pj.Error:
        suites = []
    if "AES_CM_128_HMAC_SHA1_80" not in suites:
        problems.append("no SRTP (AES_CM_128_HMAC_SHA1_80) in " + repr(suites))
    version = ep.libVersion().full
    ep.libDestroy()
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"pjsua2 {version}; max calls {max_calls}; {tls_state}; srtp {', '.join(suites)}; codecs: {', '.join(codecs)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
