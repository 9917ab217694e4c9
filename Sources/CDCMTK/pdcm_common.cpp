// Process-wide set-up and small utilities.
#include "pdcm.h"
#include "pdcm_internal.h"

#include "dcmtk/dcmjpeg/djdecode.h"
#include "dcmtk/dcmjpeg/djencode.h"
#include "dcmtk/dcmjpls/djdecode.h"
#include "dcmtk/dcmjpls/djencode.h"
#include "dcmtk/dcmdata/dcrledrg.h"
#include "dcmtk/dcmdata/dcrleerg.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/oflog/oflog.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dcmtrans.h"
#include "dcmtk/dcmnet/dul.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <mutex>
#include <unistd.h>

namespace pdcm {
int fsync_path(const std::string &path, bool directory) {
    int fd = open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
    if (fd < 0) return errno;
    int rc = directory ? fsync(fd) : fdatasync(fd);
    int e = rc == 0 ? 0 : errno;
    close(fd);
    return e;
}
namespace {
// DcmTransportConnection keeps its socket accessor protected; a pointer to the member,
// taken through a class that re-exports it, reaches it without touching the object.
struct SocketAccess : DcmTransportConnection {
    using DcmTransportConnection::getSocket;
};
}  // namespace

void set_established_receive_timeout(T_ASC_Association *assoc) {
    if (!assoc || !assoc->DULassociation) return;
    DcmTransportConnection *conn = DUL_getTransportConnection(assoc->DULassociation);
    if (!conn) return;
    DcmNativeSocketType (DcmTransportConnection::*socket)() = &SocketAccess::getSocket;
    timeval tv{kEstablishedReceiveTimeoutSeconds, 0};
    setsockopt((conn->*socket)(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}
}  // namespace pdcm

static std::once_flag init_once;

extern "C" void pdcm_init(void) {
    std::call_once(init_once, [] {
        // DCMTK reads TCP_NODELAY from the environment for every socket it opens or
        // accepts; Debian's build leaves Nagle on unless it is set (docs/ARCHITECTURE.md §4).
        setenv("TCP_NODELAY", "1", 1);
        // DCMTK gives every socket it opens or accepts this receive timeout (SO_RCVTIMEO,
        // 60 s by default). Sockets start with a short timeout for the association request
        // (or response: an SCU waiting on a silent peer); once an association is accepted,
        // set_established_receive_timeout() gives it the long one back. The listener's
        // whole-handshake deadline is shorter still (pdcm_scp.cpp, kHandshakeSeconds).
        dcmSocketReceiveTimeout.set(pdcm::kAssociationRequestTimeoutSeconds);
        OFLog::configure(OFLogger::ERROR_LOG_LEVEL);
        DJDecoderRegistration::registerCodecs();
        DJEncoderRegistration::registerCodecs();
        DJLSDecoderRegistration::registerCodecs();
        DJLSEncoderRegistration::registerCodecs();
        DcmRLEDecoderRegistration::registerCodecs();
        DcmRLEEncoderRegistration::registerCodecs();
    });
}

extern "C" void pdcm_generate_uid(const char *root, char *out, size_t outlen) {
    char buf[100];
    dcmGenerateUniqueIdentifier(buf, root ? root : SITE_INSTANCE_UID_ROOT);
    pdcm::set_text(out, outlen, buf);
}
