/*
 * sfu._fastpath: the compiled fan-out of one producer's RTP packet to all its consumers.
 *
 * One call per incoming packet (FanOut.forward) does, for every consumer of the producer:
 * the RTP header rewrite of sfu/consumer.py Consumer.forward (SSRC, sequence number,
 * timestamp, payload type, RFC 8285 one-byte extension block with mid / audio level /
 * abs-send-time), the sequence/timestamp munging of sfu/rtp/munger.py RtpMunger, SRTP
 * protection with libsrtp2 (RFC 3711; one srtp_t per subscriber transport, keyed from the
 * DTLS-SRTP keys, RFC 5764), and the sends, batched with sendmmsg(2) per socket.
 *
 * Types:
 *   SrtpSender(profile, key)  one subscriber transport's outbound SRTP context and route
 *                              (AEAD_AES_*_GCM: OpenSSL EVP directly, RFC 7714; see below).
 *   FanOut(buffer_size)        one producer: its consumers and (video) its retransmission
 *                              ring of original packets.
 *   NativeConsumer             one consumer's state (created by FanOut.add); duck-types
 *                              sfu.rtp.munger.RtpMunger (munge, resync, started, ...).
 *
 * Every length and offset coming from Python is bounds-checked; malformed input raises
 * ValueError/TypeError (control calls) or drops the packet (forward), never reads or writes
 * out of bounds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <srtp2/srtp.h>

#define PREFIX_MAX 32    /* extension block prefix: 4 + 1 + 16 (mid) + 1 (+ extra header) */
#define PAD_MAX 4
#define EXTRA_MAX 16     /* one extension element's value (audio level 1, abs-send-time 3) */
#define HDR_MAX (12 + PREFIX_MAX + EXTRA_MAX + PAD_MAX)
#define RTP_MAX 65535    /* a plaintext packet never exceeds a UDP datagram */
#define BATCH_MAX 256    /* packets per sendmmsg call */

/* ------------------------------------------------------------------------------------------ */
/* The libsrtp2 in use                                                                        */
/*
 * Built and linked against the system libsrtp2 (Debian's libsrtp2-dev). Debian builds it on
 * NSS, whose per-call PKCS#11 overhead costs 2-10 us a packet; set_srtp_library() can point
 * new senders at another libsrtp2 2.x build already loaded in the process (pylibsrtp's, on
 * OpenSSL, the one aiortc itself uses), resolved with dlsym. The soname (libsrtp2.so.1) and
 * the srtp_policy_t layout are the same across 2.x. Each sender keeps the API it was created
 * with, so contexts never cross libraries.
 */

typedef struct {
    srtp_err_status_t (*init)(void);
    srtp_err_status_t (*create)(srtp_t *, const srtp_policy_t *);
    srtp_err_status_t (*protect)(srtp_t, void *, int *);
    srtp_err_status_t (*dealloc)(srtp_t);
    srtp_err_status_t (*policy_rtp)(srtp_crypto_policy_t *, srtp_profile_t);
    srtp_err_status_t (*policy_rtcp)(srtp_crypto_policy_t *, srtp_profile_t);
    unsigned int (*key_len)(srtp_profile_t);
    unsigned int (*salt_len)(srtp_profile_t);
    const char *(*version)(void);
} SrtpApi;

static const SrtpApi system_api = {
    srtp_init,
    srtp_create,
    srtp_protect,
    srtp_dealloc,
    srtp_crypto_policy_set_from_profile_for_rtp,
    srtp_crypto_policy_set_from_profile_for_rtcp,
    srtp_profile_get_master_key_length,
    srtp_profile_get_master_salt_length,
    srtp_get_version_string,
};
static SrtpApi loaded_api;
static const SrtpApi *current_api = &system_api;

/* ------------------------------------------------------------------------------------------ */
/* AEAD_AES_128_GCM / AEAD_AES_256_GCM without libsrtp (RFC 7714)                              */
/*
 * libsrtp's per-packet bookkeeping (stream list lookup, key-limit counter, 1024-bit replay
 * bitmask shift, tag-length queries) costs more than the AES-GCM itself for short audio
 * packets, and every one of those structures is cache-cold when one packet is fanned out to
 * hundreds of subscribers. For the GCM profiles a sender therefore keeps:
 *   - one EVP_CIPHER_CTX keyed once with the SRTP session encryption key, and the 12-byte
 *     session salt, both derived from the DTLS-SRTP master key/salt with the SRTP KDF
 *     (RFC 3711 section 4.3.1 AES-CM PRF, labels 0x00 and 0x02, key_derivation_rate 0;
 *     RFC 7714 section 11: the 96-bit master salt is zero-padded to the KDF's 112 bits);
 *   - a fixed table of GCM_SSRC_MAX SSRCs with libsrtp's packet index for each (ROC << 16 |
 *     highest SEQ sent, RFC 3711 section 3.3.1), updated exactly as libsrtp's sender does
 *     (srtp_rdbx_estimate_index, srtp_rdbx_check, srtp_rdbx_add_index, with allow_repeat_tx
 *     so only the "older than the 1024-packet window" refusal remains).
 * Per packet: IV = (00 00 || SSRC || ROC || SEQ) XOR salt (RFC 7714 section 8.1), AAD = the
 * RTP header with CSRCs and extension (section 7.1), payload encrypted in place, 16-byte tag
 * appended. The output is byte-identical to libsrtp's srtp_protect (tests/unit/
 * test_fastpath.py checks it against pylibsrtp).
 *
 * An SSRC beyond the table is protected by the sender's libsrtp context instead (for as long
 * as the sender lives, so each SSRC has exactly one index). libsrtp's key usage limit (2^48
 * packets per key, srtp_key_limit_update) is not counted here: a sender never gets near it.
 *
 * The EVP functions come from the library libsrtp is taken from (pylibsrtp's _binding
 * exports the OpenSSL it bundles) or, for the system libsrtp2, from libcrypto.so.3; when
 * neither resolves, GCM senders use libsrtp. No OpenSSL header is needed: the types are
 * opaque and the two ctrl codes are OpenSSL's stable ABI values.
 */
#define GCM_SSRC_MAX 32
#define SRTP_WINDOW 1024 /* the senders' replay window (policy.window_size), as aiortc's */
#define GCM_TAG_LEN 16
#define GCM_SALT_LEN 12
#define EVP_CTRL_GCM_SET_IVLEN_ 0x9
#define EVP_CTRL_GCM_GET_TAG_ 0x10
#if SRTP_MAX_TRAILER_LEN < GCM_TAG_LEN
#error "buffers are sized with SRTP_MAX_TRAILER_LEN, which must hold the GCM tag"
#endif

typedef struct evp_ctx_opaque evp_ctx_t;
typedef struct evp_cipher_opaque evp_cipher_t;

typedef struct {
    evp_ctx_t *(*ctx_new)(void);
    void (*ctx_free)(evp_ctx_t *);
    int (*init)(evp_ctx_t *, const evp_cipher_t *, void *, const unsigned char *,
                const unsigned char *);
    int (*update)(evp_ctx_t *, unsigned char *, int *, const unsigned char *, int);
    int (*final)(evp_ctx_t *, unsigned char *, int *);
    int (*ctrl)(evp_ctx_t *, int, int, void *);
    const evp_cipher_t *(*aes_128_gcm)(void);
    const evp_cipher_t *(*aes_256_gcm)(void);
    const evp_cipher_t *(*aes_128_ctr)(void);
    const evp_cipher_t *(*aes_256_ctr)(void);
} EvpApi;

static EvpApi system_evp;
static int system_evp_state; /* 0 not tried, 1 resolved, -1 unavailable */
/* the EVP API of the library set_srtp_library() loaded, or NULL; never freed, as senders keep
 * pointing at it (like the library itself, it stays loaded for the life of the process) */
static const EvpApi *loaded_evp;
static int native_gcm = 1; /* set_native_gcm(): 0 makes new GCM senders use libsrtp */

/* Fill api from handle; 0 on success, -1 when a symbol is missing. */
static int
evp_resolve(void *handle, EvpApi *api)
{
    static const char *names[] = {"EVP_CIPHER_CTX_new", "EVP_CIPHER_CTX_free",
                                  "EVP_EncryptInit_ex", "EVP_EncryptUpdate",
                                  "EVP_EncryptFinal_ex", "EVP_CIPHER_CTX_ctrl",
                                  "EVP_aes_128_gcm",    "EVP_aes_256_gcm",
                                  "EVP_aes_128_ctr",    "EVP_aes_256_ctr"};
    void *syms[10];
    if (handle == NULL)
        return -1;
    for (int i = 0; i < 10; i++) {
        syms[i] = dlsym(handle, names[i]);
        if (syms[i] == NULL)
            return -1;
    }
    memcpy(api, syms, sizeof *api);
    return 0;
}

/* The EVP API GCM senders created now use, or NULL (they then use libsrtp). */
static const EvpApi *
current_evp(void)
{
    if (!native_gcm)
        return NULL;
    if (current_api == &loaded_api && loaded_evp != NULL)
        return loaded_evp;
    if (system_evp_state == 0) {
        void *h = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL);
        system_evp_state = evp_resolve(h, &system_evp) == 0 ? 1 : -1;
    }
    return system_evp_state == 1 ? &system_evp : NULL;
}

/* SRTP KDF (RFC 3711 section 4.3.1, key_derivation_rate 0): out = the first len bytes of
 * AES-CM keystream under the master key, IV = (master salt * 2^16) XOR (label << 64), i.e.
 * byte 7 of the zero-padded 14-byte salt XOR label, counter bytes 14..15 zero. As libsrtp
 * (srtp_stream_init_keys), the 12-byte GCM master salt is zero-padded to 14 bytes. */
static int
srtp_kdf(const EvpApi *evp, const uint8_t *mkey, int mkey_len, const uint8_t *msalt,
         int msalt_len, uint8_t label, uint8_t *out, int len)
{
    uint8_t iv[16] = {0};
    uint8_t zeros[32] = {0};
    int outl = 0, fl = 0;
    if (len > (int)sizeof zeros || msalt_len > 14)
        return -1;
    memcpy(iv, msalt, (size_t)msalt_len);
    iv[7] ^= label;
    evp_ctx_t *ctx = evp->ctx_new();
    if (ctx == NULL)
        return -1;
    int ok = evp->init(ctx, mkey_len == 32 ? evp->aes_256_ctr() : evp->aes_128_ctr(), NULL, mkey,
                       iv) == 1 &&
             evp->update(ctx, out, &outl, zeros, len) == 1 && outl == len &&
             evp->final(ctx, out + outl, &fl) == 1;
    evp->ctx_free(ctx);
    return ok ? 0 : -1;
}

static PyObject *
set_srtp_library(PyObject *module, PyObject *arg)
{
    if (arg == Py_None) {
        current_api = &system_api;
        return PyUnicode_FromString(system_api.version());
    }
    PyObject *bytes_path;
    if (!PyUnicode_FSConverter(arg, &bytes_path))
        return NULL;
    void *handle = dlopen(PyBytes_AS_STRING(bytes_path), RTLD_NOW | RTLD_LOCAL);
    Py_DECREF(bytes_path);
    if (handle == NULL) {
        PyErr_Format(PyExc_OSError, "dlopen: %s", dlerror());
        return NULL;
    }
    SrtpApi api;
    static const char *names[] = {"srtp_init",
                                  "srtp_create",
                                  "srtp_protect",
                                  "srtp_dealloc",
                                  "srtp_crypto_policy_set_from_profile_for_rtp",
                                  "srtp_crypto_policy_set_from_profile_for_rtcp",
                                  "srtp_profile_get_master_key_length",
                                  "srtp_profile_get_master_salt_length",
                                  "srtp_get_version_string"};
    void *syms[9];
    for (int i = 0; i < 9; i++) {
        syms[i] = dlsym(handle, names[i]);
        if (syms[i] == NULL) {
            PyErr_Format(PyExc_OSError, "no %s in that library", names[i]);
            return NULL; /* the handle stays open: the library is loaded by someone else */
        }
    }
    memcpy(&api, syms, sizeof api);
    const char *version = api.version();
    if (version == NULL || strncmp(version, "libsrtp2 2.", 11) != 0) {
        PyErr_Format(PyExc_ValueError, "not a libsrtp2 2.x: %s", version ? version : "?");
        return NULL;
    }
    /* Fails harmlessly when that library's owner (pylibsrtp) has initialised it already. */
    (void)api.init();
    loaded_api = api;
    current_api = &loaded_api;
    /* the same library's OpenSSL for the GCM profiles (pylibsrtp's bundles and exports it) */
    EvpApi evp;
    if (evp_resolve(handle, &evp) == 0) {
        if (loaded_evp == NULL || memcmp(loaded_evp, &evp, sizeof evp) != 0) {
            EvpApi *copy = PyMem_RawMalloc(sizeof evp);
            if (copy != NULL)
                memcpy(copy, &evp, sizeof evp);
            loaded_evp = copy;
        }
    } else {
        loaded_evp = NULL; /* libcrypto.so.3, if there is one */
    }
    return PyUnicode_FromString(version);
}

/* ------------------------------------------------------------------------------------------ */
/* SrtpSender                                                                                 */

typedef struct {
    PyObject_HEAD
    /* GCM profiles (RFC 7714), see "AEAD_AES_128_GCM / AEAD_AES_256_GCM without libsrtp":
     * the hot fields first, the SSRC table right after, all inside this object */
    evp_ctx_t *gcm;        /* keyed with the session key, or NULL: libsrtp protects */
    const EvpApi *evp;     /* the API gcm was created with */
    uint8_t gcm_salt[GCM_SALT_LEN]; /* session salt (RFC 7714 section 8.1) */
    uint32_t gcm_n;        /* SSRCs in the table */
    uint32_t gcm_ssrc[GCM_SSRC_MAX];  /* as in the header (network byte order) */
    uint64_t gcm_index[GCM_SSRC_MAX]; /* libsrtp's packet index: ROC << 16 | highest SEQ */
    srtp_t srtp;
    const SrtpApi *api; /* the library srtp was created with */
    int fd;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    PyObject *fallback; /* callable(bytes) used when fd < 0 (relayed candidate), or NULL */
    unsigned long long packets_sent;
    unsigned long long bytes_sent;
    unsigned long long dropped;
    PyObject *weakreflist;
} SrtpSender;

static PyTypeObject SrtpSenderType;

static void
gcm_clear(SrtpSender *s)
{
    if (s->gcm != NULL)
        s->evp->ctx_free(s->gcm); /* OpenSSL cleanses the key schedule */
    s->gcm = NULL;
    s->evp = NULL;
    memset(s->gcm_salt, 0, sizeof s->gcm_salt);
    s->gcm_n = 0;
}

/* Key s->gcm for an AEAD_AES_*_GCM profile from master key || master salt (len bytes: 16 + 12
 * or 32 + 12). Session key and salt: SRTP KDF labels 0x00 and 0x02 (RFC 3711 section 4.3.1,
 * RFC 7714 section 11). 0 on success; -1 leaves s->gcm NULL (the caller clears). */
static int
gcm_init(SrtpSender *s, const EvpApi *evp, int profile, const uint8_t *master, int len)
{
    int klen = profile == srtp_profile_aead_aes_256_gcm ? 32 : 16;
    if (len != klen + GCM_SALT_LEN)
        return -1;
    uint8_t session_key[32];
    s->evp = evp;
    s->gcm_n = 0;
    int ok = srtp_kdf(evp, master, klen, master + klen, GCM_SALT_LEN, 0x00, session_key, klen) ==
                 0 &&
             srtp_kdf(evp, master, klen, master + klen, GCM_SALT_LEN, 0x02, s->gcm_salt,
                      GCM_SALT_LEN) == 0 &&
             (s->gcm = evp->ctx_new()) != NULL &&
             evp->init(s->gcm, klen == 32 ? evp->aes_256_gcm() : evp->aes_128_gcm(), NULL, NULL,
                       NULL) == 1 &&
             evp->ctrl(s->gcm, EVP_CTRL_GCM_SET_IVLEN_, 12, NULL) == 1 &&
             evp->init(s->gcm, NULL, NULL, session_key, NULL) == 1;
    memset(session_key, 0, sizeof session_key);
    return ok ? 0 : -1;
}

/* libsrtp's srtp_index_guess (crypto/replay/rdbx.c): the 48-bit index of SEQ s given the
 * highest index sent (RFC 3711 section 3.3.1); returns the difference to it. */
static int32_t
gcm_index_guess(uint64_t local, uint64_t *guess, uint16_t s)
{
    uint32_t local_roc = (uint32_t)(local >> 16), guess_roc;
    int32_t local_seq = (uint16_t)local, diff;
    if (local_seq < 0x8000) {
        if ((int32_t)s - local_seq > 0x8000) {
            guess_roc = local_roc - 1;
            diff = (int32_t)s - local_seq - 0x10000;
        } else {
            guess_roc = local_roc;
            diff = (int32_t)s - local_seq;
        }
    } else {
        if (local_seq - 0x8000 > (int32_t)s) {
            guess_roc = local_roc + 1;
            diff = (int32_t)s - local_seq + 0x10000;
        } else {
            guess_roc = local_roc;
            diff = (int32_t)s - local_seq;
        }
    }
    *guess = ((uint64_t)guess_roc << 16) | s;
    return diff;
}

/* Protect buf[0:*len] in place as libsrtp's srtp_protect does for the GCM profiles (RFC 7714
 * section 8); buf has room for *len + GCM_TAG_LEN. 0 on success, -1 refused (malformed
 * header, index older than the 1024-packet window, cipher failure), 1 when the SSRC table
 * is full and this SSRC is not in it (the caller uses libsrtp). */
static int
gcm_protect(SrtpSender *s, uint8_t *buf, int *len)
{
    int n = *len;
    /* srtp_validate_rtp_header: fixed header, CSRCs, extension header and its body */
    if (n < 12)
        return -1;
    int aad = 12 + 4 * (buf[0] & 0x0f);
    if (n < aad)
        return -1;
    if (buf[0] & 0x10) {
        if (n < aad + 4)
            return -1;
        aad += 4 + 4 * ((buf[aad + 2] << 8) | buf[aad + 3]);
        if (n < aad)
            return -1;
    }
    uint32_t ssrc;
    memcpy(&ssrc, buf + 8, 4);
    uint32_t k = 0;
    while (k < s->gcm_n && s->gcm_ssrc[k] != ssrc)
        k++;
    if (k == s->gcm_n) {
        if (k == GCM_SSRC_MAX)
            return 1;
        s->gcm_ssrc[k] = ssrc; /* a new stream: index 0 (srtp_stream_clone, rdbx init) */
        s->gcm_index[k] = 0;
        s->gcm_n++;
    }
    /* srtp_rdbx_estimate_index, srtp_rdbx_check (allow_repeat_tx: only replay_old refuses,
     * window 1024), srtp_rdbx_add_index */
    uint16_t seq = (uint16_t)((buf[2] << 8) | buf[3]);
    uint64_t idx = s->gcm_index[k], est;
    int32_t delta;
    if (idx > 0x8000) {
        delta = gcm_index_guess(idx, &est, seq);
    } else {
        est = seq;
        delta = (int32_t)seq - (int32_t)(uint16_t)idx;
    }
    if (delta <= 0 && (SRTP_WINDOW - 1) + delta < 0)
        return -1; /* srtp_err_status_replay_old */
    if (delta > 0)
        s->gcm_index[k] = idx + (uint16_t)delta;
    /* IV = (00 00 || SSRC || ROC || SEQ) XOR salt (RFC 7714 section 8.1) */
    uint8_t iv[12];
    uint32_t roc = (uint32_t)(est >> 16);
    iv[0] = 0;
    iv[1] = 0;
    memcpy(iv + 2, buf + 8, 4);
    iv[6] = (uint8_t)(roc >> 24);
    iv[7] = (uint8_t)(roc >> 16);
    iv[8] = (uint8_t)(roc >> 8);
    iv[9] = (uint8_t)roc;
    iv[10] = buf[2];
    iv[11] = buf[3];
    for (int i = 0; i < 12; i++)
        iv[i] ^= s->gcm_salt[i];
    const EvpApi *evp = s->evp;
    int outl = 0, fl = 0, plen = n - aad;
    if (evp->init(s->gcm, NULL, NULL, NULL, iv) != 1 ||
        evp->update(s->gcm, NULL, &outl, buf, aad) != 1)
        return -1;
    if (plen > 0 && (evp->update(s->gcm, buf + aad, &outl, buf + aad, plen) != 1 || outl != plen))
        return -1;
    if (evp->final(s->gcm, buf + n, &fl) != 1 || fl != 0 ||
        evp->ctrl(s->gcm, EVP_CTRL_GCM_GET_TAG_, GCM_TAG_LEN, buf + n) != 1)
        return -1;
    *len = n + GCM_TAG_LEN;
    return 0;
}

static int
SrtpSender_init(SrtpSender *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"profile", "key", NULL};
    int profile;
    Py_buffer key;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iy*", kwlist, &profile, &key))
        return -1;
    if (self->srtp != NULL) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_RuntimeError, "SrtpSender already initialised");
        return -1;
    }
    if (profile != srtp_profile_aes128_cm_sha1_80 && profile != srtp_profile_aead_aes_128_gcm &&
        profile != srtp_profile_aead_aes_256_gcm) {
        PyBuffer_Release(&key);
        PyErr_Format(PyExc_ValueError, "unsupported SRTP profile %d", profile);
        return -1;
    }
    const SrtpApi *api = current_api;
    unsigned int need = api->key_len((srtp_profile_t)profile) + api->salt_len((srtp_profile_t)profile);
    if (need == 0 || key.len != (Py_ssize_t)need) {
        PyBuffer_Release(&key);
        PyErr_Format(PyExc_ValueError, "SRTP key+salt must be %u bytes", need);
        return -1;
    }
    unsigned char keybuf[64], key_copy[64];
    if (need > sizeof keybuf) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "SRTP key+salt too long");
        return -1;
    }
    memcpy(keybuf, key.buf, need);
    memcpy(key_copy, key.buf, need);
    PyBuffer_Release(&key);
    srtp_policy_t policy;
    memset(&policy, 0, sizeof policy);
    if (api->policy_rtp(&policy.rtp, (srtp_profile_t)profile) != srtp_err_status_ok ||
        api->policy_rtcp(&policy.rtcp, (srtp_profile_t)profile) != srtp_err_status_ok) {
        memset(key_copy, 0, sizeof key_copy);
        PyErr_SetString(PyExc_ValueError, "libsrtp does not support this profile");
        return -1;
    }
    policy.ssrc.type = ssrc_any_outbound;
    policy.key = keybuf;
    policy.allow_repeat_tx = 1; /* as aiortc's tx policy: a NACKed packet is sent again */
    policy.window_size = SRTP_WINDOW;
    policy.next = NULL;
    srtp_err_status_t st = api->create(&self->srtp, &policy);
    memset(keybuf, 0, sizeof keybuf);
    if (st != srtp_err_status_ok) {
        self->srtp = NULL;
        memset(key_copy, 0, sizeof key_copy);
        PyErr_Format(PyExc_ValueError, "srtp_create failed (%d)", (int)st);
        return -1;
    }
    self->api = api;
    if (profile != srtp_profile_aes128_cm_sha1_80) {
        const EvpApi *evp = current_evp();
        if (evp != NULL && gcm_init(self, evp, profile, key_copy, (int)need) != 0)
            gcm_clear(self); /* libsrtp protects this sender's packets */
    }
    memset(key_copy, 0, sizeof key_copy);
    return 0;
}

static PyObject *
SrtpSender_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    SrtpSender *self = (SrtpSender *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->srtp = NULL;
    self->gcm = NULL;
    self->gcm_n = 0;
    self->fd = -1;
    self->addrlen = 0;
    self->fallback = NULL;
    self->weakreflist = NULL;
    return (PyObject *)self;
}

static int
SrtpSender_traverse(SrtpSender *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fallback);
    return 0;
}

static int
SrtpSender_clear(SrtpSender *self)
{
    Py_CLEAR(self->fallback);
    return 0;
}

static void
SrtpSender_dealloc(SrtpSender *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    SrtpSender_clear(self);
    gcm_clear(self);
    if (self->srtp != NULL) {
        self->api->dealloc(self->srtp);
        self->srtp = NULL;
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Protect buf[0:*len] in place (buf has room for *len + SRTP_MAX_TRAILER_LEN). 0 on success. */
static int
sender_protect(SrtpSender *s, uint8_t *buf, int *len)
{
    if (s->srtp == NULL || *len < 12)
        return -1;
    if (s->gcm != NULL) {
        int r = gcm_protect(s, buf, len);
        if (r <= 0)
            return r;
    }
    return s->api->protect(s->srtp, buf, len) == srtp_err_status_ok ? 0 : -1;
}

static PyObject *
SrtpSender_set_route(SrtpSender *self, PyObject *args)
{
    int fd;
    PyObject *addr = Py_None, *fallback = Py_None;
    if (!PyArg_ParseTuple(args, "i|OO", &fd, &addr, &fallback))
        return NULL;
    if (fallback != Py_None && !PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable or None");
        return NULL;
    }
    if (fd >= 0) {
        const char *host;
        int port;
        if (!PyArg_ParseTuple(addr, "si", &host, &port))
            return NULL;
        if (port < 0 || port > 65535) {
            PyErr_SetString(PyExc_ValueError, "port out of range");
            return NULL;
        }
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof ss);
        socklen_t len;
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
            a4->sin_family = AF_INET;
            a4->sin_port = htons((uint16_t)port);
            len = sizeof *a4;
        } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
            a6->sin6_family = AF_INET6;
            a6->sin6_port = htons((uint16_t)port);
            len = sizeof *a6;
        } else {
            PyErr_Format(PyExc_ValueError, "not an IP address literal: %s", host);
            return NULL;
        }
        self->addr = ss;
        self->addrlen = len;
    } else {
        self->addrlen = 0;
        fd = -1;
    }
    self->fd = fd;
    Py_XDECREF(self->fallback);
    self->fallback = NULL;
    if (fallback != Py_None) {
        Py_INCREF(fallback);
        self->fallback = fallback;
    }
    Py_RETURN_NONE;
}

static PyObject *
protect_to_bytes(SrtpSender *self, Py_buffer *in)
{
    if (in->len < 12 || in->len > RTP_MAX) {
        PyErr_SetString(PyExc_ValueError, "RTP packet must be 12..65535 bytes");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, in->len + SRTP_MAX_TRAILER_LEN);
    if (out == NULL)
        return NULL;
    uint8_t *buf = (uint8_t *)PyBytes_AS_STRING(out);
    memcpy(buf, in->buf, in->len);
    int len = (int)in->len;
    if (sender_protect(self, buf, &len) != 0) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_ValueError, "srtp_protect failed");
        return NULL;
    }
    if (_PyBytes_Resize(&out, len) < 0)
        return NULL;
    return out;
}

static PyObject *
SrtpSender_protect(SrtpSender *self, PyObject *arg)
{
    Py_buffer in;
    if (PyObject_GetBuffer(arg, &in, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *r = protect_to_bytes(self, &in);
    PyBuffer_Release(&in);
    return r;
}

/* Send one protected datagram (no batching). Returns 0 on success, -1 dropped. */
static int
sender_send_one(SrtpSender *s, const uint8_t *buf, int len)
{
    if (s->fd >= 0) {
        ssize_t r = sendto(s->fd, buf, (size_t)len, 0, (struct sockaddr *)&s->addr, s->addrlen);
        if (r < 0) {
            s->dropped++;
            return -1;
        }
    } else if (s->fallback != NULL) {
        PyObject *b = PyBytes_FromStringAndSize((const char *)buf, len);
        if (b == NULL) {
            PyErr_Clear();
            s->dropped++;
            return -1;
        }
        PyObject *r = PyObject_CallOneArg(s->fallback, b);
        Py_DECREF(b);
        if (r == NULL) {
            PyErr_Clear();
            s->dropped++;
            return -1;
        }
        Py_DECREF(r);
        return 0; /* the fallback counts its own packets */
    } else {
        s->dropped++;
        return -1;
    }
    s->packets_sent++;
    s->bytes_sent += (unsigned long long)len;
    return 0;
}

static PyObject *
SrtpSender_send(SrtpSender *self, PyObject *arg)
{
    Py_buffer in;
    if (PyObject_GetBuffer(arg, &in, PyBUF_SIMPLE) < 0)
        return NULL;
    if (in.len < 12 || in.len > RTP_MAX) {
        PyBuffer_Release(&in);
        self->dropped++;
        Py_RETURN_FALSE;
    }
    uint8_t *buf = PyMem_Malloc((size_t)in.len + SRTP_MAX_TRAILER_LEN);
    if (buf == NULL) {
        PyBuffer_Release(&in);
        return PyErr_NoMemory();
    }
    memcpy(buf, in.buf, in.len);
    int len = (int)in.len;
    PyBuffer_Release(&in);
    int ok = 0;
    if (sender_protect(self, buf, &len) == 0)
        ok = sender_send_one(self, buf, len) == 0;
    else
        self->dropped++;
    PyMem_Free(buf);
    return PyBool_FromLong(ok);
}

static PyMethodDef SrtpSender_methods[] = {
    {"set_route", (PyCFunction)SrtpSender_set_route, METH_VARARGS,
     "set_route(fd, addr=None, fallback=None): send on socket fd to addr (host, port); with "
     "fd < 0 hand protected datagrams to fallback(bytes) instead (or drop them)."},
    {"protect", (PyCFunction)SrtpSender_protect, METH_O,
     "protect(rtp: bytes) -> bytes: SRTP-protect one RTP packet (RFC 3711) with this context. "
     "Raises ValueError for a packet shorter than 12 bytes or when libsrtp refuses."},
    {"send", (PyCFunction)SrtpSender_send, METH_O,
     "send(rtp: bytes) -> bool: protect and send one RTP packet; False when dropped."},
    {NULL}};

static PyMemberDef SrtpSender_members[] = {
    {"fd", T_INT, offsetof(SrtpSender, fd), READONLY, "socket fd, or -1"},
    {"packets_sent", T_ULONGLONG, offsetof(SrtpSender, packets_sent), READONLY,
     "datagrams sent on fd"},
    {"bytes_sent", T_ULONGLONG, offsetof(SrtpSender, bytes_sent), READONLY,
     "protected bytes sent on fd"},
    {"dropped", T_ULONGLONG, offsetof(SrtpSender, dropped), READONLY,
     "datagrams dropped (protect or send failed)"},
    {"gcm_ssrcs", T_UINT, offsetof(SrtpSender, gcm_n), READONLY,
     "SSRCs protected natively (GCM profiles, at most GCM_SSRC_MAX; later ones use libsrtp)"},
    {NULL}};

static PyObject *
SrtpSender_get_engine(SrtpSender *self, void *closure)
{
    return PyUnicode_FromString(self->gcm != NULL ? "evp" : "libsrtp");
}

static PyGetSetDef SrtpSender_getset[] = {
    {"engine", (getter)SrtpSender_get_engine, NULL,
     "'evp': RTP protected here with OpenSSL AES-GCM (RFC 7714) for the first GCM_SSRC_MAX "
     "SSRCs, libsrtp beyond; 'libsrtp': every packet through srtp_protect",
     NULL},
    {NULL}};

static PyTypeObject SrtpSenderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._fastpath.SrtpSender",
    .tp_basicsize = sizeof(SrtpSender),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "SrtpSender(profile: int, key: bytes): outbound SRTP context (libsrtp2, "
              "ssrc_any_outbound) of one subscriber transport, and its route.",
    .tp_new = SrtpSender_new,
    .tp_init = (initproc)SrtpSender_init,
    .tp_dealloc = (destructor)SrtpSender_dealloc,
    .tp_traverse = (traverseproc)SrtpSender_traverse,
    .tp_clear = (inquiry)SrtpSender_clear,
    .tp_methods = SrtpSender_methods,
    .tp_members = SrtpSender_members,
    .tp_getset = SrtpSender_getset,
    .tp_weaklistoffset = offsetof(SrtpSender, weakreflist),
};

/* ------------------------------------------------------------------------------------------ */
/* NativeConsumer                                                                             */

struct FanOut;

#define EPOCHS 4 /* earlier sync points whose packets can still be rebuilt for a NACK */

typedef struct {
    uint16_t seq_offset;
    uint32_t ts_offset;
    int64_t sync_in;
    int64_t highest_in;
} Epoch;

typedef struct {
    PyObject_HEAD
    SrtpSender *sender;     /* strong */
    struct FanOut *fanout;  /* borrowed; NULL once removed */
    uint32_t ssrc;
    uint8_t pt;
    char active;
    char wait_keyframe;
    char has_plain;
    uint8_t extra_id;
    uint8_t x_prefix[PREFIX_MAX];
    uint8_t x_pad[PAD_MAX];
    uint8_t plain[PREFIX_MAX];
    uint8_t x_prefix_len, x_pad_len, plain_len;
    /* RtpMunger state */
    char started;
    char resync_pending;
    uint16_t init_seq;
    uint32_t init_ts;
    uint32_t resync_ts_gap;
    uint16_t seq_offset;
    uint32_t ts_offset;
    int64_t highest_in;
    int64_t sync_in;
    uint16_t last_seq;
    uint32_t last_ts;
    uint32_t out_ts_offset; /* Consumer._ts_offset: out_ts - in_ts of the last forwarded packet */
    Epoch epochs[EPOCHS];   /* the sync points before the current one, newest first */
    int n_epochs;
    unsigned long long packets_sent;
    unsigned long long bytes_sent; /* payload bytes */
} NativeConsumer;

static PyTypeObject NativeConsumerType;

typedef struct {
    int32_t seq; /* -1: empty */
    uint32_t ts;
    uint8_t marker;
    int8_t extra_len; /* -1: no extra */
    uint8_t extra[EXTRA_MAX];
    uint32_t len;
    uint32_t cap;
    uint8_t *payload;
} RingSlot;

typedef struct FanOut {
    PyObject_HEAD
    NativeConsumer **items; /* strong refs, sorted by sender fd */
    Py_ssize_t count, cap;
    RingSlot *ring;
    uint32_t ring_mask; /* ring size - 1; ring == NULL when size 0 */
    uint8_t *arena;
    size_t arena_cap;
    unsigned long long forwarded;
} FanOut;

static PyTypeObject FanOutType;

static void
munger_sync(NativeConsumer *c, uint16_t seq, uint32_t ts, uint16_t *os, uint32_t *ots)
{
    uint16_t out_seq;
    uint32_t out_ts;
    int64_t ext;
    if (c->started) {
        memmove(&c->epochs[1], &c->epochs[0], (EPOCHS - 1) * sizeof(Epoch));
        c->epochs[0].seq_offset = c->seq_offset;
        c->epochs[0].ts_offset = c->ts_offset;
        c->epochs[0].sync_in = c->sync_in;
        c->epochs[0].highest_in = c->highest_in;
        if (c->n_epochs < EPOCHS)
            c->n_epochs++;
        out_seq = (uint16_t)(c->last_seq + 1);
        out_ts = c->last_ts + c->resync_ts_gap;
        int64_t base = c->highest_in + 1;
        ext = base + (((int64_t)seq - base) & 0xFFFF);
    } else {
        out_seq = c->init_seq;
        out_ts = c->init_ts;
        ext = seq;
        c->started = 1;
    }
    c->resync_pending = 0;
    c->seq_offset = (uint16_t)(out_seq - seq);
    c->ts_offset = out_ts - ts;
    c->highest_in = ext;
    c->sync_in = ext;
    c->last_seq = out_seq;
    c->last_ts = out_ts;
    *os = out_seq;
    *ots = out_ts;
}

/* sfu.rtp.munger.RtpMunger.munge: 1 with (*os, *ots) set, 0 when the packet is dropped. */
static int
munge(NativeConsumer *c, uint16_t seq, uint32_t ts, uint16_t *os, uint32_t *ots)
{
    if (!c->started || c->resync_pending) {
        munger_sync(c, seq, ts, os, ots);
        return 1;
    }
    int64_t highest = c->highest_in;
    int64_t ext = highest + ((((int64_t)seq - highest + 0x8000) & 0xFFFF) - 0x8000);
    if (ext < c->sync_in)
        return 0;
    uint16_t out_seq = (uint16_t)(seq + c->seq_offset);
    uint32_t out_ts = ts + c->ts_offset;
    if (ext > highest) {
        c->highest_in = ext;
        c->last_seq = out_seq;
        c->last_ts = out_ts;
    }
    *os = out_seq;
    *ots = out_ts;
    return 1;
}

/* Header + extension block of one consumer's packet into out (>= HDR_MAX bytes). */
static int
build_header(NativeConsumer *c, uint8_t *out, int marker, uint16_t seq, uint32_t ts,
             const uint8_t *extra, Py_ssize_t extra_len)
{
    uint8_t b1 = (uint8_t)((marker ? 0x80 : 0) | c->pt);
    int n = 12;
    if (extra != NULL && c->extra_id) {
        out[0] = 0x90;
        memcpy(out + n, c->x_prefix, c->x_prefix_len);
        n += c->x_prefix_len;
        memcpy(out + n, extra, (size_t)extra_len);
        n += (int)extra_len;
        memcpy(out + n, c->x_pad, c->x_pad_len);
        n += c->x_pad_len;
    } else if (c->has_plain) {
        out[0] = 0x90;
        memcpy(out + n, c->plain, c->plain_len);
        n += c->plain_len;
    } else {
        out[0] = 0x80;
    }
    out[1] = b1;
    out[2] = (uint8_t)(seq >> 8);
    out[3] = (uint8_t)seq;
    out[4] = (uint8_t)(ts >> 24);
    out[5] = (uint8_t)(ts >> 16);
    out[6] = (uint8_t)(ts >> 8);
    out[7] = (uint8_t)ts;
    out[8] = (uint8_t)(c->ssrc >> 24);
    out[9] = (uint8_t)(c->ssrc >> 16);
    out[10] = (uint8_t)(c->ssrc >> 8);
    out[11] = (uint8_t)c->ssrc;
    return n;
}

static void
NativeConsumer_dealloc(NativeConsumer *self)
{
    Py_XDECREF(self->sender);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
copy_bytes_arg(PyObject *obj, uint8_t *dst, uint8_t *len_out, size_t max, const char *what)
{
    Py_buffer b;
    if (PyObject_GetBuffer(obj, &b, PyBUF_SIMPLE) < 0)
        return -1;
    if (b.len < 0 || (size_t)b.len > max) {
        PyBuffer_Release(&b);
        PyErr_Format(PyExc_ValueError, "%s longer than %zu bytes", what, max);
        return -1;
    }
    memcpy(dst, b.buf, b.len);
    *len_out = (uint8_t)b.len;
    PyBuffer_Release(&b);
    return 0;
}

static PyObject *
NativeConsumer_configure(NativeConsumer *self, PyObject *args)
{
    int pt, extra_id;
    PyObject *x_prefix, *x_pad, *plain;
    if (!PyArg_ParseTuple(args, "iOOOi", &pt, &x_prefix, &x_pad, &plain, &extra_id))
        return NULL;
    if (pt < 0 || pt > 127 || extra_id < 0 || extra_id > 14) {
        PyErr_SetString(PyExc_ValueError, "payload type 0..127, extension id 0..14");
        return NULL;
    }
    uint8_t xp[PREFIX_MAX], xd[PAD_MAX], pl[PREFIX_MAX];
    uint8_t xpl, xdl, pll = 0;
    if (copy_bytes_arg(x_prefix, xp, &xpl, PREFIX_MAX, "x_prefix") < 0 ||
        copy_bytes_arg(x_pad, xd, &xdl, PAD_MAX, "x_pad") < 0)
        return NULL;
    if (plain != Py_None && copy_bytes_arg(plain, pl, &pll, PREFIX_MAX, "plain_prefix") < 0)
        return NULL;
    self->pt = (uint8_t)pt;
    self->extra_id = (uint8_t)extra_id;
    memcpy(self->x_prefix, xp, xpl);
    self->x_prefix_len = xpl;
    memcpy(self->x_pad, xd, xdl);
    self->x_pad_len = xdl;
    self->has_plain = plain != Py_None;
    memcpy(self->plain, pl, pll);
    self->plain_len = pll;
    Py_RETURN_NONE;
}

static PyObject *
NativeConsumer_resync(NativeConsumer *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"ts_gap", NULL};
    PyObject *gap_obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O", kwlist, &gap_obj))
        return NULL;
    uint32_t gap = 1;
    if (gap_obj != NULL) {
        if (!PyLong_Check(gap_obj)) {
            PyErr_SetString(PyExc_TypeError, "ts_gap must be an int");
            return NULL;
        }
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(gap_obj, &overflow);
        if (v == -1 && PyErr_Occurred())
            return NULL;
        if (overflow > 0)
            gap = (uint32_t)PyLong_AsUnsignedLongLongMask(gap_obj);
        else if (overflow < 0 || v <= 1)
            gap = 1;
        else
            gap = (uint32_t)(unsigned long long)v;
        if (overflow > 0 && PyErr_Occurred())
            return NULL;
    }
    if (self->started) {
        self->resync_pending = 1;
        self->resync_ts_gap = gap;
    }
    Py_RETURN_NONE;
}

static PyObject *
NativeConsumer_munge(NativeConsumer *self, PyObject *args)
{
    unsigned int seq;
    unsigned long ts;
    if (!PyArg_ParseTuple(args, "Ik", &seq, &ts))
        return NULL;
    if (seq > 0xFFFF || ts > 0xFFFFFFFFUL) {
        PyErr_SetString(PyExc_ValueError, "seq is 16-bit, ts 32-bit");
        return NULL;
    }
    uint16_t os;
    uint32_t ots;
    if (!munge(self, (uint16_t)seq, (uint32_t)ts, &os, &ots))
        Py_RETURN_NONE;
    return Py_BuildValue("(Hk)", os, (unsigned long)ots);
}

static PyObject *
NativeConsumer_unmunge_seq(NativeConsumer *self, PyObject *arg)
{
    long v = PyLong_AsLong(arg);
    if (v == -1 && PyErr_Occurred())
        return NULL;
    return PyLong_FromLong((long)(uint16_t)((uint16_t)(v & 0xFFFF) - self->seq_offset));
}

static PyObject *
NativeConsumer_munger_state(NativeConsumer *self, PyObject *unused)
{
    return Py_BuildValue("(HkHkLLikHkN)", self->init_seq, (unsigned long)self->init_ts,
                         self->seq_offset, (unsigned long)self->ts_offset,
                         (long long)self->highest_in, (long long)self->sync_in,
                         (int)self->resync_pending, (unsigned long)self->resync_ts_gap,
                         self->last_seq, (unsigned long)self->last_ts,
                         PyBool_FromLong(self->started));
}

static PyObject *
NativeConsumer_load_munger_state(NativeConsumer *self, PyObject *arg)
{
    /* (init_seq, init_ts, seq_offset, ts_offset, highest_in, sync_in, resync_pending,
        resync_ts_gap, last_seq, last_ts, started): sfu.rtp.munger.RtpMunger.export_state() */
    if (!PyTuple_Check(arg) || PyTuple_GET_SIZE(arg) != 11) {
        PyErr_SetString(PyExc_TypeError, "munger state is an 11-tuple");
        return NULL;
    }
    unsigned long long u[11];
    long long hi = 0, sy = 0;
    for (int i = 0; i < 11; i++) {
        PyObject *o = PyTuple_GET_ITEM(arg, i);
        if (i == 4 || i == 5) {
            long long v = PyLong_AsLongLong(o);
            if (v == -1 && PyErr_Occurred())
                return NULL;
            if (v < 0) {
                PyErr_SetString(PyExc_ValueError, "extended sequence numbers are >= 0");
                return NULL;
            }
            if (i == 4)
                hi = v;
            else
                sy = v;
            continue;
        }
        if (!PyLong_Check(o) && !PyBool_Check(o)) {
            PyErr_SetString(PyExc_TypeError, "munger state fields are ints");
            return NULL;
        }
        u[i] = PyLong_AsUnsignedLongLongMask(o);
        if (u[i] == (unsigned long long)-1 && PyErr_Occurred())
            return NULL;
    }
    self->init_seq = (uint16_t)u[0];
    self->init_ts = (uint32_t)u[1];
    self->seq_offset = (uint16_t)u[2];
    self->ts_offset = (uint32_t)u[3];
    self->highest_in = hi;
    self->sync_in = sy;
    self->resync_pending = u[6] != 0;
    self->resync_ts_gap = (uint32_t)u[7];
    self->last_seq = (uint16_t)u[8];
    self->last_ts = (uint32_t)u[9];
    self->started = u[10] != 0;
    Py_RETURN_NONE;
}

static PyObject *NativeConsumer_rebuild(NativeConsumer *self, PyObject *arg);

static PyMethodDef NativeConsumer_methods[] = {
    {"configure", (PyCFunction)NativeConsumer_configure, METH_VARARGS,
     "configure(pt, x_prefix, x_pad, plain_prefix | None, extra_id): payload type and the "
     "RFC 8285 extension block of this consumer (see sfu.consumer)."},
    {"resync", (PyCFunction)(void (*)(void))NativeConsumer_resync, METH_VARARGS | METH_KEYWORDS,
     "RtpMunger.resync(ts_gap=1)"},
    {"munge", (PyCFunction)NativeConsumer_munge, METH_VARARGS,
     "RtpMunger.munge(seq, ts) -> (out_seq, out_ts) | None"},
    {"unmunge_seq", (PyCFunction)NativeConsumer_unmunge_seq, METH_O, "RtpMunger.unmunge_seq"},
    {"rebuild", (PyCFunction)NativeConsumer_rebuild, METH_O,
     "rebuild(out_seq) -> bytes | None: the plaintext packet this consumer sent with out_seq, "
     "rebuilt from the producer's ring of originals; None when not available."},
    {"export_state", (PyCFunction)NativeConsumer_munger_state, METH_NOARGS,
     "RtpMunger.export_state(): the munger state as an 11-tuple"},
    {"load_state", (PyCFunction)NativeConsumer_load_munger_state, METH_O,
     "load_state(state): continue the stream of an RtpMunger.export_state() tuple"},
    {NULL}};

static PyMemberDef NativeConsumer_members[] = {
    {"ssrc", T_UINT, offsetof(NativeConsumer, ssrc), READONLY, "outgoing SSRC"},
    {"active", T_BOOL, offsetof(NativeConsumer, active), 0, "forwarding enabled"},
    {"wait_keyframe", T_BOOL, offsetof(NativeConsumer, wait_keyframe), 0,
     "drop until a packet that starts a keyframe"},
    {"started", T_BOOL, offsetof(NativeConsumer, started), READONLY, "RtpMunger.started"},
    {"last_seq", T_USHORT, offsetof(NativeConsumer, last_seq), READONLY, "RtpMunger.last_seq"},
    {"last_ts", T_UINT, offsetof(NativeConsumer, last_ts), READONLY, "RtpMunger.last_ts"},
    {"ts_offset", T_UINT, offsetof(NativeConsumer, out_ts_offset), READONLY,
     "out ts - in ts of the last forwarded packet (mod 2**32)"},
    {"packets_sent", T_ULONGLONG, offsetof(NativeConsumer, packets_sent), READONLY,
     "packets forwarded"},
    {"bytes_sent", T_ULONGLONG, offsetof(NativeConsumer, bytes_sent), READONLY,
     "payload bytes forwarded"},
    {"sender", T_OBJECT, offsetof(NativeConsumer, sender), READONLY, "its SrtpSender"},
    {NULL}};

static PyTypeObject NativeConsumerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._fastpath.NativeConsumer",
    .tp_basicsize = sizeof(NativeConsumer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One consumer's native forwarding state (made by FanOut.add).",
    .tp_dealloc = (destructor)NativeConsumer_dealloc,
    .tp_methods = NativeConsumer_methods,
    .tp_members = NativeConsumer_members,
};

/* ------------------------------------------------------------------------------------------ */
/* FanOut                                                                                     */

static void
ring_free(FanOut *f)
{
    if (f->ring != NULL) {
        for (uint32_t i = 0; i <= f->ring_mask; i++)
            PyMem_Free(f->ring[i].payload);
        PyMem_Free(f->ring);
        f->ring = NULL;
    }
}

static int
FanOut_init(FanOut *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"buffer_size", NULL};
    int size = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|i", kwlist, &size))
        return -1;
    if (size < 0 || size > 32768 || (size & (size - 1)) != 0) {
        PyErr_SetString(PyExc_ValueError, "buffer_size must be 0 or a power of two <= 32768");
        return -1;
    }
    ring_free(self);
    if (size > 0) {
        self->ring = PyMem_Calloc((size_t)size, sizeof(RingSlot));
        if (self->ring == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (int i = 0; i < size; i++)
            self->ring[i].seq = -1;
        self->ring_mask = (uint32_t)size - 1;
    }
    return 0;
}

static void
FanOut_dealloc(FanOut *self)
{
    PyObject_GC_UnTrack(self);
    for (Py_ssize_t i = 0; i < self->count; i++) {
        self->items[i]->fanout = NULL;
        Py_DECREF(self->items[i]);
    }
    PyMem_Free(self->items);
    ring_free(self);
    PyMem_Free(self->arena);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
FanOut_traverse(FanOut *self, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < self->count; i++)
        Py_VISIT(self->items[i]);
    return 0;
}

static int
FanOut_clear(FanOut *self)
{
    Py_ssize_t n = self->count;
    self->count = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        self->items[i]->fanout = NULL;
        Py_DECREF(self->items[i]);
    }
    return 0;
}

static PyObject *
FanOut_add(FanOut *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"sender", "ssrc", "init_seq", "init_ts", NULL};
    PyObject *sender;
    unsigned long ssrc, init_ts;
    unsigned int init_seq;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!kIk", kwlist, &SrtpSenderType, &sender, &ssrc,
                                     &init_seq, &init_ts))
        return NULL;
    if (ssrc > 0xFFFFFFFFUL || init_seq > 0xFFFF || init_ts > 0xFFFFFFFFUL) {
        PyErr_SetString(PyExc_ValueError, "ssrc/init_ts are 32-bit, init_seq 16-bit");
        return NULL;
    }
    if (self->count == self->cap) {
        Py_ssize_t cap = self->cap ? self->cap * 2 : 8;
        NativeConsumer **items = PyMem_Realloc(self->items, (size_t)cap * sizeof *items);
        if (items == NULL)
            return PyErr_NoMemory();
        self->items = items;
        self->cap = cap;
    }
    NativeConsumer *c = PyObject_New(NativeConsumer, &NativeConsumerType);
    if (c == NULL)
        return NULL;
    memset((char *)c + sizeof(PyObject), 0, sizeof(NativeConsumer) - sizeof(PyObject));
    Py_INCREF(sender);
    c->sender = (SrtpSender *)sender;
    c->fanout = self;
    c->ssrc = (uint32_t)ssrc;
    c->init_seq = (uint16_t)init_seq;
    c->init_ts = (uint32_t)init_ts;
    c->resync_ts_gap = 1;
    /* keep items sorted by fd so that consumers sharing a socket are adjacent */
    int fd = c->sender->fd;
    Py_ssize_t pos = self->count;
    while (pos > 0 && self->items[pos - 1]->sender->fd > fd) {
        self->items[pos] = self->items[pos - 1];
        pos--;
    }
    Py_INCREF(c);
    self->items[pos] = c;
    self->count++;
    return (PyObject *)c;
}

static PyObject *
FanOut_remove(FanOut *self, PyObject *arg)
{
    for (Py_ssize_t i = 0; i < self->count; i++) {
        if ((PyObject *)self->items[i] == arg) {
            NativeConsumer *c = self->items[i];
            memmove(&self->items[i], &self->items[i + 1],
                    (size_t)(self->count - i - 1) * sizeof(NativeConsumer *));
            self->count--;
            c->fanout = NULL;
            c->active = 0;
            Py_DECREF(c);
            Py_RETURN_TRUE;
        }
    }
    Py_RETURN_FALSE;
}

static PyObject *
FanOut_clear_buffer(FanOut *self, PyObject *unused)
{
    if (self->ring != NULL)
        for (uint32_t i = 0; i <= self->ring_mask; i++)
            self->ring[i].seq = -1;
    Py_RETURN_NONE;
}

static void
ring_store(FanOut *f, uint16_t seq, uint32_t ts, int marker, const uint8_t *extra,
           Py_ssize_t extra_len, const uint8_t *payload, Py_ssize_t plen)
{
    RingSlot *s = &f->ring[seq & f->ring_mask];
    s->seq = -1;
    if (extra_len > EXTRA_MAX || plen > RTP_MAX)
        return;
    if (s->cap < (uint32_t)plen) {
        uint32_t cap = plen < 1280 ? 1280 : (uint32_t)plen;
        uint8_t *p = PyMem_Realloc(s->payload, cap);
        if (p == NULL)
            return;
        s->payload = p;
        s->cap = cap;
    }
    if (plen > 0) /* s->payload may still be NULL for an empty payload */
        memcpy(s->payload, payload, (size_t)plen);
    s->len = (uint32_t)plen;
    s->ts = ts;
    s->marker = (uint8_t)(marker != 0);
    s->extra_len = extra == NULL ? -1 : (int8_t)extra_len;
    if (extra != NULL)
        memcpy(s->extra, extra, (size_t)extra_len);
    s->seq = seq;
}

static PyObject *
NativeConsumer_rebuild(NativeConsumer *self, PyObject *arg)
{
    long v = PyLong_AsLong(arg);
    if (v == -1 && PyErr_Occurred())
        return NULL;
    FanOut *f = self->fanout;
    if (f == NULL || f->ring == NULL || !self->started || v < 0 || v > 0xFFFF)
        Py_RETURN_NONE;
    /* the sync point (epoch) the packet was sent in: the current one, then earlier ones */
    Epoch cur = {self->seq_offset, self->ts_offset, self->sync_in, self->highest_in};
    const Epoch *e = NULL;
    RingSlot *s = NULL;
    for (int i = -1; i < self->n_epochs && e == NULL; i++) {
        const Epoch *cand = i < 0 ? &cur : &self->epochs[i];
        uint16_t in_seq = (uint16_t)((uint16_t)v - cand->seq_offset);
        RingSlot *slot = &f->ring[in_seq & f->ring_mask];
        if (slot->seq != (int32_t)in_seq)
            continue;
        int64_t hi = cand->highest_in;
        int64_t ext = hi + ((((int64_t)in_seq - hi + 0x8000) & 0xFFFF) - 0x8000);
        if (ext >= cand->sync_in && ext <= hi) {
            e = cand;
            s = slot;
        }
    }
    if (e == NULL)
        Py_RETURN_NONE;
    const uint8_t *extra = s->extra_len >= 0 ? s->extra : NULL;
    Py_ssize_t elen = s->extra_len >= 0 ? s->extra_len : 0;
    uint8_t hdr[HDR_MAX];
    int hlen = build_header(self, hdr, s->marker, (uint16_t)v, s->ts + e->ts_offset, extra, elen);
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)hlen + s->len);
    if (out == NULL)
        return NULL;
    memcpy(PyBytes_AS_STRING(out), hdr, (size_t)hlen);
    if (s->len > 0)
        memcpy(PyBytes_AS_STRING(out) + hlen, s->payload, s->len);
    return out;
}

static int
flush_fd(SrtpSender **senders, struct mmsghdr *msgs, int n)
{
    int i = 0;
    int sent = 0;
    while (i < n) {
        int fd = senders[i]->fd;
        int j = i + 1;
        while (j < n && senders[j]->fd == fd)
            j++;
        /* msgs[i:j] share fd */
        int k = i;
        while (k < j) {
            int r = sendmmsg(fd, msgs + k, (unsigned int)(j - k), 0);
            if (r <= 0) {
                senders[k]->dropped++; /* this datagram failed (EAGAIN, unreachable...) */
                k++;
                continue;
            }
            for (int m = k; m < k + r; m++) {
                senders[m]->packets_sent++;
                senders[m]->bytes_sent += msgs[m].msg_hdr.msg_iov->iov_len;
            }
            sent += r;
            k += r;
        }
        i = j;
    }
    return sent;
}

static PyObject *
FanOut_forward(FanOut *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "forward(data, start, end, marker, seq, ts, extra, keyframe)");
        return NULL;
    }
    Py_buffer data;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    Py_buffer extra_buf;
    int have_extra = 0;
    PyObject *deferred = NULL;
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    Py_ssize_t end = PyLong_AsSsize_t(args[2]);
    int marker = PyObject_IsTrue(args[3]);
    long seq = PyLong_AsLong(args[4]);
    unsigned long long ts = PyLong_AsUnsignedLongLong(args[5]);
    int keyframe = PyObject_IsTrue(args[7]);
    if (PyErr_Occurred() || marker < 0 || keyframe < 0)
        goto fail;
    if (start < 0 || end < start || end > data.len || seq < 0 || seq > 0xFFFF ||
        ts > 0xFFFFFFFFULL) {
        PyErr_SetString(PyExc_ValueError, "start/end/seq/ts out of range");
        goto fail;
    }
    const uint8_t *extra = NULL;
    Py_ssize_t extra_len = 0;
    if (args[6] != Py_None) {
        if (PyObject_GetBuffer(args[6], &extra_buf, PyBUF_SIMPLE) < 0)
            goto fail;
        have_extra = 1;
        if (extra_buf.len > EXTRA_MAX) {
            PyErr_SetString(PyExc_ValueError, "extension element longer than 16 bytes");
            goto fail;
        }
        extra = extra_buf.buf;
        extra_len = extra_buf.len;
    }
    const uint8_t *payload = (const uint8_t *)data.buf + start;
    Py_ssize_t plen = end - start;
    if (plen > RTP_MAX - HDR_MAX) { /* cannot be a UDP datagram once rewritten: drop */
        PyBuffer_Release(&data);
        if (have_extra)
            PyBuffer_Release(&extra_buf);
        return PyLong_FromLong(0);
    }
    if (self->ring != NULL)
        ring_store(self, (uint16_t)seq, (uint32_t)ts, marker, extra, extra_len, payload, plen);

    size_t slot = (size_t)(HDR_MAX + plen + SRTP_MAX_TRAILER_LEN + 15) & ~(size_t)15;
    Py_ssize_t n = self->count;
    Py_ssize_t batch = n < BATCH_MAX ? n : BATCH_MAX;
    if (batch > 0 && self->arena_cap < slot * (size_t)batch) {
        uint8_t *a = PyMem_Realloc(self->arena, slot * (size_t)batch);
        if (a == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        self->arena = a;
        self->arena_cap = slot * (size_t)batch;
    }
    struct mmsghdr msgs[BATCH_MAX];
    struct iovec iov[BATCH_MAX];
    SrtpSender *senders[BATCH_MAX];
    int queued = 0;
    long forwarded = 0;
    /* items can change only through Python calls; the fallback may call Python, so hold refs */
    for (Py_ssize_t i = 0; i < self->count; i++) {
        NativeConsumer *c = self->items[i];
        if (!c->active)
            continue;
        if (c->wait_keyframe) {
            if (!keyframe)
                continue;
            c->wait_keyframe = 0;
        }
        uint16_t os;
        uint32_t ots;
        if (!munge(c, (uint16_t)seq, (uint32_t)ts, &os, &ots))
            continue;
        c->out_ts_offset = ots - (uint32_t)ts;
        c->packets_sent++;
        c->bytes_sent += (unsigned long long)plen;
        forwarded++;
        SrtpSender *s = c->sender;
        uint8_t *buf = self->arena + slot * (size_t)queued;
        int len = build_header(c, buf, marker, os, ots, extra, extra_len);
        if (plen > 0)
            memcpy(buf + len, payload, (size_t)plen);
        len += (int)plen;
        if (sender_protect(s, buf, &len) != 0) {
            s->dropped++;
            continue;
        }
        if (s->fd < 0) {
            /* relayed route: handed to Python after the loop (Python may change items) */
            if (deferred == NULL && (deferred = PyList_New(0)) == NULL)
                goto fail;
            PyObject *item = Py_BuildValue("(Oy#)", (PyObject *)s, (const char *)buf,
                                           (Py_ssize_t)len);
            if (item == NULL || PyList_Append(deferred, item) < 0) {
                Py_XDECREF(item);
                goto fail;
            }
            Py_DECREF(item);
            continue;
        }
        iov[queued].iov_base = buf;
        iov[queued].iov_len = (size_t)len;
        memset(&msgs[queued], 0, sizeof msgs[queued]);
        msgs[queued].msg_hdr.msg_name = &s->addr;
        msgs[queued].msg_hdr.msg_namelen = s->addrlen;
        msgs[queued].msg_hdr.msg_iov = &iov[queued];
        msgs[queued].msg_hdr.msg_iovlen = 1;
        senders[queued] = s;
        queued++;
        if (queued == batch) {
            flush_fd(senders, msgs, queued);
            queued = 0;
        }
    }
    if (queued > 0)
        flush_fd(senders, msgs, queued);
    self->forwarded += (unsigned long long)forwarded;
    PyBuffer_Release(&data);
    if (have_extra)
        PyBuffer_Release(&extra_buf);
    if (deferred != NULL) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(deferred); i++) {
            PyObject *item = PyList_GET_ITEM(deferred, i);
            SrtpSender *s = (SrtpSender *)PyTuple_GET_ITEM(item, 0);
            PyObject *b = PyTuple_GET_ITEM(item, 1);
            sender_send_one(s, (const uint8_t *)PyBytes_AS_STRING(b), (int)PyBytes_GET_SIZE(b));
        }
        Py_DECREF(deferred);
    }
    return PyLong_FromLong(forwarded);
fail:
    Py_XDECREF(deferred);
    PyBuffer_Release(&data);
    if (have_extra)
        PyBuffer_Release(&extra_buf);
    return NULL;
}

static Py_ssize_t
FanOut_len(FanOut *self)
{
    return self->count;
}

static PySequenceMethods FanOut_as_sequence = {
    .sq_length = (lenfunc)FanOut_len,
};

static PyMethodDef FanOut_methods[] = {
    {"add", (PyCFunction)(void (*)(void))FanOut_add, METH_VARARGS | METH_KEYWORDS,
     "add(sender, ssrc, init_seq, init_ts) -> NativeConsumer (inactive until active=True)."},
    {"remove", (PyCFunction)FanOut_remove, METH_O, "remove(consumer) -> bool"},
    {"clear_buffer", (PyCFunction)FanOut_clear_buffer, METH_NOARGS,
     "forget the retransmission ring (the producer's SSRC changed)"},
    {"forward", (PyCFunction)(void (*)(void))FanOut_forward, METH_FASTCALL,
     "forward(data, start, end, marker, seq, ts, extra, keyframe) -> int: rewrite, protect "
     "and send data[start:end] (the RTP payload) to every active consumer; returns how many "
     "consumers it was forwarded to. Raises ValueError for out-of-range offsets/fields."},
    {NULL}};

static PyMemberDef FanOut_members[] = {
    {"forwarded", T_ULONGLONG, offsetof(FanOut, forwarded), READONLY,
     "packets forwarded in total"},
    {NULL}};

static PyTypeObject FanOutType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._fastpath.FanOut",
    .tp_basicsize = sizeof(FanOut),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "FanOut(buffer_size=0): one producer's consumers; buffer_size originals are "
              "kept for retransmissions (power of two, 0 = none).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FanOut_init,
    .tp_dealloc = (destructor)FanOut_dealloc,
    .tp_traverse = (traverseproc)FanOut_traverse,
    .tp_clear = (inquiry)FanOut_clear,
    .tp_methods = FanOut_methods,
    .tp_members = FanOut_members,
    .tp_as_sequence = &FanOut_as_sequence,
};

/* ------------------------------------------------------------------------------------------ */

static PyObject *
srtp_library(PyObject *module, PyObject *unused)
{
    return PyUnicode_FromString(current_api->version());
}

static PyObject *
set_native_gcm(PyObject *module, PyObject *arg)
{
    int on = PyObject_IsTrue(arg);
    if (on < 0)
        return NULL;
    native_gcm = on;
    return PyBool_FromLong(current_evp() != NULL);
}

static PyMethodDef module_methods[] = {
    {"set_native_gcm", (PyCFunction)set_native_gcm, METH_O,
     "set_native_gcm(on: bool) -> bool: whether SrtpSenders created from now on protect the "
     "AEAD_AES_128_GCM / AEAD_AES_256_GCM profiles with OpenSSL's EVP AES-GCM directly (RFC "
     "7714; the default) or through libsrtp's srtp_protect; returns whether the native one is "
     "in use (False when off or when no libcrypto EVP API could be resolved)."},
    {"set_srtp_library", (PyCFunction)set_srtp_library, METH_O,
     "set_srtp_library(path | None) -> str: create new SrtpSenders with the libsrtp2 2.x "
     "shared object at path (already loaded, e.g. pylibsrtp's), or with the system libsrtp2 "
     "(None); returns its version. Raises OSError/ValueError when path is no libsrtp2 2.x."},
    {"srtp_library", (PyCFunction)srtp_library, METH_NOARGS,
     "srtp_library() -> str: version of the libsrtp2 new senders use"},
    {NULL}};

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "sfu._fastpath",
    .m_methods = module_methods,
    .m_doc = "Compiled RTP fan-out: header rewrite, SRTP (libsrtp2) and sendmmsg.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__fastpath(void)
{
    if (srtp_init() != srtp_err_status_ok) {
        PyErr_SetString(PyExc_ImportError, "srtp_init failed");
        return NULL;
    }
    if (PyType_Ready(&SrtpSenderType) < 0 || PyType_Ready(&NativeConsumerType) < 0 ||
        PyType_Ready(&FanOutType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastpath_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&SrtpSenderType);
    Py_INCREF(&NativeConsumerType);
    Py_INCREF(&FanOutType);
    if (PyModule_AddObject(m, "SrtpSender", (PyObject *)&SrtpSenderType) < 0 ||
        PyModule_AddObject(m, "NativeConsumer", (PyObject *)&NativeConsumerType) < 0 ||
        PyModule_AddObject(m, "FanOut", (PyObject *)&FanOutType) < 0 ||
        PyModule_AddIntConstant(m, "PROFILE_AES128_CM_SHA1_80", srtp_profile_aes128_cm_sha1_80) <
            0 ||
        PyModule_AddIntConstant(m, "PROFILE_AEAD_AES_128_GCM", srtp_profile_aead_aes_128_gcm) <
            0 ||
        PyModule_AddIntConstant(m, "PROFILE_AEAD_AES_256_GCM", srtp_profile_aead_aes_256_gcm) <
            0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
