// Storage SCU: perfd's exporter sends result files to the PACS with DCMTK's DcmSCU.
#include "pdcm.h"
#include "pdcm_internal.h"

#include "dcmtk/dcmnet/scu.h"
#include "dcmtk/dcmnet/dcmlayer.h"
#include "dcmtk/dcmtls/tlslayer.h"

#include <arpa/inet.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace {
// DcmSCU keeps useSecureConnection for subclasses (DcmTLSSCU is one, but it builds its
// own layer from its own options); this one only opens the door to ours.
class ExportSCU : public DcmSCU {
public:
    using DcmSCU::useSecureConnection;
};
}  // namespace

#include <map>
#include <memory>
#include <vector>

extern "C" int pdcm_store_files(const pdcm_scu_config *cfg, const char *const *paths, size_t count, uint16_t *statuses,
                                char *err, size_t errlen) {
    return pdcm_store_files_each(cfg, paths, count, statuses, nullptr, err, errlen);
}

extern "C" int pdcm_store_files_each(const pdcm_scu_config *cfg, const char *const *paths, size_t count, uint16_t *statuses,
                                     const pdcm_scu_hooks *hooks, char *err, size_t errlen) {
    pdcm_init();
    for (size_t i = 0; i < count; i++) statuses[i] = 0xFFFF;
    // The SOP class and transfer syntax of each file decide the presentation contexts.
    std::vector<std::string> classes(count);
    std::map<std::string, bool> distinct;
    for (size_t i = 0; i < count; i++) {
        DcmFileFormat ff;
        if (ff.loadFile(paths[i], EXS_Unknown, EGL_noChange, 256).bad()) {
            pdcm::set_text(err, errlen, std::string("cannot read ") + paths[i]);
            return 1;
        }
        classes[i] = pdcm::get_string(ff.getMetaInfo(), DCM_MediaStorageSOPClassUID);
        if (classes[i].empty()) classes[i] = pdcm::get_string(ff.getDataset(), DCM_SOPClassUID);
        distinct[classes[i]] = true;
    }
    std::unique_ptr<DcmTransportLayer> tls;  // declared first: outlives the SCU that uses it
    ExportSCU scu;
    scu.setAETitle(cfg->calling_ae);
    scu.setPeerAETitle(cfg->called_ae);
    scu.setPeerHostName(cfg->host);
    scu.setPeerPort(cfg->port);
    const Uint32 timeout = cfg->timeout_s > 0 ? Uint32(cfg->timeout_s) : 30;
    scu.setConnectionTimeout(Sint32(timeout));
    scu.setACSETimeout(timeout);
    scu.setDIMSETimeout(timeout);
    scu.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
    OFList<OFString> xfers;
    xfers.push_back(UID_LittleEndianExplicitTransferSyntax);
    xfers.push_back(UID_LittleEndianImplicitTransferSyntax);
    for (auto &kv : distinct) scu.addPresentationContext(kv.first.c_str(), xfers);
    std::string where = std::string(cfg->called_ae) + "@" + cfg->host + ":" + std::to_string(cfg->port);
    OFCondition c = scu.initNetwork();
    if (c.good() && cfg->tls) {
        std::string why;
        tls.reset(pdcm::make_tls_layer(false, cfg->tls, why));
        if (!tls) {
            pdcm::set_text(err, errlen, "TLS to " + where + ": " + why);
            return 1;
        }
        if (cfg->tls->verify_hostname) {
            // DCMTK checks the chain only; the name is left to the caller (tlslayer.h).
            X509_VERIFY_PARAM *param = SSL_CTX_get0_param(static_cast<DcmTLSTransportLayer *>(tls.get())->getNativeHandle());
            X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            in6_addr a6;
            in_addr a4;
            const bool literal = inet_pton(AF_INET, cfg->host, &a4) == 1 || inet_pton(AF_INET6, cfg->host, &a6) == 1;
            const int ok = literal ? X509_VERIFY_PARAM_set1_ip_asc(param, cfg->host) : X509_VERIFY_PARAM_set1_host(param, cfg->host, 0);
            if (ok != 1) {
                pdcm::set_text(err, errlen, "TLS to " + where + ": cannot check the certificate against host " + cfg->host);
                return 1;
            }
        }
        c = scu.useSecureConnection(tls.get());
    }
    if (c.good()) c = scu.negotiateAssociation();
    if (c.bad()) {
        std::string hint;
        if (cfg->tls)
            hint = std::string(" (TLS: the PACS certificate must chain to trusted_certificates") +
                   (cfg->tls->verify_hostname ? std::string(" and name ") + cfg->host + "; tls.verify_hostname: false skips the name" : "") + ")";
        pdcm::set_text(err, errlen, "cannot associate with " + where + ": " + c.text() + hint);
        return 1;
    }
    // (DcmSCU keeps its association private, so its socket keeps the short receive timeout
    // of pdcm_init: it reads only small C-STORE responses, each awaited by the DIMSE timeout
    // before the read starts, so only a PACS stalling inside one PDU for that long is cut.)
    for (size_t i = 0; i < count; i++) {
        T_ASC_PresentationContextID pc = scu.findPresentationContextID(classes[i].c_str(), "");
        if (pc == 0) {
            statuses[i] = 0x0122;  // SOP class not supported by the peer
            continue;
        }
        if (hooks && hooks->send && !hooks->send(hooks->ctx, i)) continue;
        Uint16 status = 0xFFFF;
        c = scu.sendSTORERequest(pc, paths[i], nullptr, status);
        if (c.bad()) {
            pdcm::set_text(err, errlen, "C-STORE to " + where + " failed: " + c.text());
            scu.abortAssociation();
            return 1;
        }
        statuses[i] = status;
        if (hooks && hooks->answered) hooks->answered(hooks->ctx, i, status);
    }
    scu.releaseAssociation();
    return 0;
}
