/*
 * pjproject build settings of the gateway's pjsua2 module: scripts/build-pjsua2 (used by
 * scripts/setup and deploy/Dockerfile) copies this file to pjlib/include/pj/config_site.h before
 * ./configure, and rebuilds when it changes.
 *
 * The stock pjsua2-python wheel is built with PJSUA_MAX_CALLS 4: a fifth call gets 486 and
 * uaConfig.maxCalls above 4 is clamped silently. Here one worker process can hold up to 512 calls;
 * `calls_per_worker` in gateway.yaml picks the real limit (CPU is the bound long before 512).
 */
#define PJSUA_MAX_CALLS             512
#define PJSUA_MAX_ACC               32

/* Conference bridge slots: each call has its own stream port plus the gateway's AudioMediaPort. */
#define PJSUA_MAX_CONF_PORTS        (3 * PJSUA_MAX_CALLS)

/*
 * Every call holds an RTP and an RTCP socket, plus SIP UDP/TCP transports and TCP connections.
 * The select() ioqueue is capped at FD_SETSIZE (1024), so the build uses the epoll ioqueue
 * (configure --enable-epoll), which is not. Keep `ulimit -n` above this in the container.
 */
#define PJ_IOQUEUE_MAX_HANDLES      2048

/* Many concurrent INVITE/BYE/REFER transactions and dialogs. */
#define PJSIP_MAX_TSX_COUNT         ((16 * 1024) - 1)
#define PJSIP_MAX_DIALOG_COUNT      ((16 * 1024) - 1)

/* Audio only; no sound device (configure --disable-sound: the null device drives the clock). */
#define PJMEDIA_HAS_VIDEO           0
