// DICOM over TLS: one DCMTK transport layer per listener or per export association.
#include "pdcm.h"
#include "pdcm_internal.h"

#include "dcmtk/dcmtls/tlslayer.h"

#include <cstdio>
#include <mutex>
#include <unistd.h>

namespace pdcm {

// OpenSSL is initialised once per process; every later layer is built without it.
static std::once_flag openssl_once;

DcmTransportLayer *make_tls_layer(bool acceptor, const pdcm_tls_config *cfg, std::string &err) {
    bool first = false;
    std::call_once(openssl_once, [&first] { first = true; });
    auto *layer = new DcmTLSTransportLayer(acceptor ? NET_ACCEPTOR : NET_REQUESTOR, nullptr, first ? OFTrue : OFFalse);
    auto fail = [&](const std::string &msg) -> DcmTransportLayer * {
        err = msg;
        delete layer;
        return nullptr;
    };
    auto readable = [](const char *path) { return path && *path && access(path, R_OK) == 0; };
    const bool hasCert = cfg->certificate && *cfg->certificate;
    const bool hasKey = cfg->private_key && *cfg->private_key;
    if (acceptor && (!hasCert || !hasKey))
        return fail("a TLS listener needs tls.certificate and tls.private_key (PEM files)");
    if (hasCert != hasKey) return fail("give both a TLS certificate and its private key, or neither");
    if (hasCert) {
        if (!readable(cfg->private_key))
            return fail(std::string("cannot read the TLS private key ") + cfg->private_key + " (path and permissions?)");
        if (!readable(cfg->certificate))
            return fail(std::string("cannot read the TLS certificate ") + cfg->certificate + " (path and permissions?)");
        if (layer->setPrivateKeyFile(cfg->private_key, DCF_Filetype_PEM).bad())
            return fail(std::string("the TLS private key ") + cfg->private_key + " is not a usable unencrypted PEM key");
        if (layer->setCertificateFile(cfg->certificate, DCF_Filetype_PEM).bad())
            return fail(std::string("the TLS certificate ") + cfg->certificate + " is not a usable PEM certificate");
        if (!layer->checkPrivateKeyMatchesCertificate())
            return fail(std::string("the private key ") + cfg->private_key + " does not belong to the certificate " + cfg->certificate);
    }
    for (size_t i = 0; i < cfg->trusted_count; i++) {
        const char *ca = cfg->trusted[i];
        if (!readable(ca)) return fail(std::string("cannot read the trusted certificate ") + (ca ? ca : "(null)"));
        if (layer->addTrustedCertificateFile(ca, DCF_Filetype_PEM).bad())
            return fail(std::string("the trusted certificate ") + ca + " is not a usable PEM certificate");
    }
    if (cfg->require_peer_certificate && cfg->trusted_count == 0)
        return fail("require_peer_certificate is on but no trusted_certificates are given: no peer could be verified");
    OFCondition c = layer->setTLSProfile(TSP_Profile_BCP195_ND);
    if (c.good()) c = layer->activateCipherSuites();
    if (c.bad()) return fail(std::string("cannot set up the TLS cipher suites: ") + c.text());
    layer->setCertificateVerification(cfg->require_peer_certificate ? DCV_requireCertificate : DCV_checkCertificate);
    return layer;
}

}  // namespace pdcm

extern "C" int pdcm_tls_check(int acceptor, const pdcm_tls_config *cfg, char *err, size_t err_len) {
    std::string msg;
    DcmTransportLayer *layer = pdcm::make_tls_layer(acceptor != 0, cfg, msg);
    if (layer) {
        delete layer;
        return 0;
    }
    if (err && err_len) snprintf(err, err_len, "%s", msg.c_str());
    return -1;
}
