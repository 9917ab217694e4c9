// perfd's storage SCP: DCMTK's DcmThreadSCP per association, our own accept loop.
//
// Why not DcmSCPPool: its workers are created by a default constructor (no way to hand
// them our callbacks without a global), it cannot report the port it bound, and it reads
// every A-ASSOCIATE-RQ on its one listening thread. Ours (pdcm_scp_run; "Accepting
// connections" below) does handshakes on a pool of threads under a deadline, decides the
// calling AE before an association takes a slot, runs a thread per association, and has a
// stop flag and a drain that waits for running associations.
#include "pdcm.h"
#include "pdcm_internal.h"

#include "dcmtk/dcmnet/scpthrd.h"
#include "dcmtk/dcmnet/scpcfg.h"
#include "dcmtk/dcmnet/dulstruc.h"
#include "dcmtk/dcmnet/diutil.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/dcmnet/dcmlayer.h"
#include "dcmtk/dcmnet/dcmtrans.h"
#include "dcmtk/dcmdata/dcostrmf.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <map>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <cerrno>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <fcntl.h>
#include <unistd.h>

// Group commit for directory fsyncs. Each stored instance needs its directory entry on
// disk before the acknowledgement; when several associations store into one directory at
// once, one fsync of the directory covers every rename that happened before it started,
// so waiters share it instead of queueing one journal commit each.
class DirSyncer {
public:
    int sync(const std::string &dir) {
        Entry *e;
        {
            std::lock_guard<std::mutex> g(mapMutex_);
            e = &entries_[dir];
        }
        std::unique_lock<std::mutex> lock(e->m);
        const uint64_t ticket = ++e->requested;
        while (e->completed < ticket) {
            if (!e->syncing) {
                e->syncing = true;
                const uint64_t covers = e->requested;
                lock.unlock();
                int rc = pdcm::fsync_path(dir, true);
                lock.lock();
                e->syncing = false;
                // The latest round's result, not a sticky one: a later fsync of the directory
                // covers every rename made before it began, so once one succeeds the earlier
                // failure no longer stands (it used to refuse the series until restart).
                e->error = rc;
                e->completed = covers;
                e->cv.notify_all();
            } else {
                e->cv.wait(lock);
            }
        }
        return e->error;
    }

private:
    struct Entry {
        std::mutex m;
        std::condition_variable cv;
        uint64_t requested = 0, completed = 0;
        bool syncing = false;
        int error = 0;
    };
    std::mutex mapMutex_;
    std::map<std::string, Entry> entries_;
};

// One task at a time on a second thread, for one association: the fsyncs of an instance
// wait on the disk there while the association's own thread parses the file and commits
// its row, and the answer goes out when both are done.
class SideThread {
public:
    ~SideThread() {
        if (!thread_.joinable()) return;
        {
            std::lock_guard<std::mutex> g(m_);
            quit_ = true;
        }
        cv_.notify_all();
        thread_.join();
    }
    void start(std::function<int()> task) {
        if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
        std::lock_guard<std::mutex> g(m_);
        task_ = std::move(task);
        pending_ = true;
        cv_.notify_all();
    }
    // The last task's result (an errno), once; 0 when nothing was started since.
    int wait() {
        std::unique_lock<std::mutex> g(m_);
        cv_.wait(g, [this] { return !pending_; });
        return std::exchange(result_, 0);
    }

private:
    void loop() {
        std::unique_lock<std::mutex> g(m_);
        for (;;) {
            cv_.wait(g, [this] { return quit_ || pending_; });
            if (!pending_) return;
            auto task = std::move(task_);
            g.unlock();
            const int rc = task();
            g.lock();
            result_ = rc;
            pending_ = false;
            cv_.notify_all();
        }
    }
    std::thread thread_;
    std::mutex m_;
    std::condition_variable cv_;
    std::function<int()> task_;
    bool pending_ = false, quit_ = false;
    int result_ = 0;
};


// A reserve of spool files whose blocks are already allocated and written (zeros).
// Receiving into a new file makes the fdatasync before the acknowledgement also allocate
// blocks, write the new inode and (ext4 syncs a new file's directory with it) the
// directory of .incoming; rewriting blocks a file already owns costs the data and one
// flush. Measured on this project's machine, 512 KiB instances, fdatasync + rename +
// directory fsync: 0.72 ms per instance into new files, 0.48 ms into written ones
// (fallocate'd but unwritten blocks: 0.71 ms, no gain). PostgreSQL recycles WAL segments
// for the same reason. The reserve is filled only while no instance has arrived for a
// moment, so it never competes with a transfer, and only while the disk keeps
// min_free_disk_gb plus the reserve free. Nothing trusts a blank's content: a C-STORE
// rewrites it from byte 0 and cuts it to length, and start-up reconciliation deletes
// leftovers in .incoming like any other partial file.
class BlankPool {
public:
    BlankPool(std::string dir, uint64_t reserveBytes, uint64_t minFreeBytes)
        : dir_(std::move(dir)), reserve_(reserveBytes), minFree_(minFreeBytes) {
        if (reserve_ > 0) thread_ = std::thread([this] { loop(); });
    }
    ~BlankPool() {
        {
            std::lock_guard<std::mutex> g(m_);
            stop_ = true;
        }
        cv_.notify_all();
        if (thread_.joinable()) thread_.join();
    }
    // A blank to receive into, or "" when the reserve is empty.
    std::string take() {
        touch();
        std::lock_guard<std::mutex> g(m_);
        if (ready_.empty()) return std::string();
        std::string path = std::move(ready_.front().first);
        readyBytes_ -= ready_.front().second;
        ready_.pop_front();
        return path;
    }
    // An instance is being received: the filler waits for a quiet moment.
    void touch() { lastActivity_.store(now()); }
    // Blanks are sized for the instances that arrive (a 512x512 CT slice before any has):
    // the last instance's size up to a whole block, so the next one of the series (the same
    // size give or take a few bytes of UIDs) is cut within its last block and frees none.
    void learn(uint64_t size) { blankSize_.store((size + 4095) / 4096 * 4096); }
    uint64_t readyBytes() {
        std::lock_guard<std::mutex> g(m_);
        return readyBytes_;
    }

private:
    static int64_t now() {
        return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
    }
    bool quiet() const { return now() - lastActivity_.load() >= kQuietMs; }

    void loop() {
        std::vector<char> zeros(1 << 20, 0);
        std::unique_lock<std::mutex> g(m_);
        while (!stop_) {
            cv_.wait_for(g, std::chrono::milliseconds(100), [this] { return stop_.load(); });
            if (stop_ || readyBytes_ >= reserve_ || !quiet()) continue;
            g.unlock();
            // A batch of blanks, each written and fdatasync'd, then one fsync of the
            // directory before any is handed out. A transfer starting cuts the batch short.
            std::vector<std::pair<std::string, uint64_t>> made;
            const uint64_t size = blankSize_.load();
            uint64_t batchBytes = 0;
            for (int i = 0; i < 16 && quiet() && !stop_ && roomFor(batchBytes + size); i++) {
                std::string path = dir_ + "/" PDCM_BLANK_PREFIX + std::to_string(getpid()) + "-" + std::to_string(++counter_);
                int fd = open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
                if (fd < 0) break;
                bool ok = true;
                for (uint64_t off = 0; ok && off < size;) {
                    ssize_t n = write(fd, zeros.data(), std::min<uint64_t>(zeros.size(), size - off));
                    if (n <= 0) ok = false; else off += uint64_t(n);
                }
                ok = ok && fdatasync(fd) == 0;
                close(fd);
                if (!ok) {
                    unlink(path.c_str());
                    break;
                }
                made.emplace_back(std::move(path), size);
                batchBytes += size;
            }
            if (!made.empty() && pdcm::fsync_path(dir_, true) != 0) {
                for (auto &b : made) unlink(b.first.c_str());
                made.clear();
            }
            g.lock();
            for (auto &b : made) {
                readyBytes_ += b.second;
                ready_.push_back(std::move(b));
            }
            // Nothing made while quiet: the disk is full or failing; look again later.
            if (made.empty() && quiet()) cv_.wait_for(g, std::chrono::seconds(5), [this] { return stop_.load(); });
        }
    }
    // Whether `bytes` more blanks stay within the reserve and leave the disk its margin.
    bool roomFor(uint64_t bytes) {
        if (readyBytes() + bytes > reserve_) return false;
        struct statvfs vfs;
        if (statvfs(dir_.c_str(), &vfs) != 0) return false;
        return uint64_t(vfs.f_bavail) * vfs.f_frsize > minFree_ + reserve_ + bytes;
    }

    static constexpr int64_t kQuietMs = 300;
    const std::string dir_;
    const uint64_t reserve_, minFree_;
    std::atomic<uint64_t> blankSize_{516 << 10};   // a 512x512 16-bit slice with a header under 4 KiB
    std::atomic<int64_t> lastActivity_{0};
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<std::pair<std::string, uint64_t>> ready_;
    uint64_t readyBytes_ = 0;
    static std::atomic<unsigned long> counter_;   // shared: the plain and TLS listeners fill one directory
    std::atomic<bool> stop_{false};
    std::thread thread_;
};
std::atomic<unsigned long> BlankPool::counter_{0};

struct Handshake;

struct pdcm_scp {
    DirSyncer dirSyncer;
    // Series directories whose entry in spool_dir is known to be on disk (spool_dir
    // fsync'd after they were made). Until then every store into one fsyncs spool_dir: the
    // association that lost the mkdir race must not answer before the winner's fsync ran.
    std::mutex durableMutex;
    std::set<std::string> durableDirs;
    std::unique_ptr<BlankPool> blanks;
    std::string incoming_dir;   // spool_dir/.incoming: files still being received
    std::string ae_title;
    std::string spool_dir;
    uint64_t min_free_bytes = 0;
    int max_associations = 8;
    pdcm_scp_callbacks cb{};
    T_ASC_Network *net = nullptr;
    uint16_t port = 0;
    bool secure = false;
    DcmSCPConfig config;
    std::atomic<bool> stop{false};
    std::mutex mutex;
    std::condition_variable idle;
    int active = 0;

    // Connections before they become associations (see pdcm_scp_run): guarded by netMutex.
    int max_per_host = 16;
    std::mutex netMutex;
    std::condition_variable netCv;
    bool listening = false;                 // an acceptor thread is waiting in accept()
    std::set<Handshake *> handshakes;       // under the deadline watch
    std::map<std::string, int> perHost;     // open connections by peer address (pending + established)

    void log(int level, const std::string &msg) {
        if (cb.log) cb.log(cb.ctx, level, msg.c_str());
    }
    // A connection or association refused for `kind` (a label for the refusal counters).
    void refused(const std::string &host, const char *kind, const std::string &why) {
        if (cb.refused_kind) cb.refused_kind(cb.ctx, host.c_str(), kind, why.c_str());
        else if (cb.refused) cb.refused(cb.ctx, host.c_str(), why.c_str());
    }
    void releaseHost(const std::string &host) {
        std::lock_guard<std::mutex> g(netMutex);
        auto it = perHost.find(host);
        if (it != perHost.end() && --it->second <= 0) perHost.erase(it);
    }
};

namespace {

const char *kStorageClasses[] = {UID_CTImageStorage, UID_EnhancedCTImageStorage};

// Transfer syntaxes we can decode, in order of preference (uncompressed first: cheapest).
const char *kTransferSyntaxes[] = {
    UID_LittleEndianExplicitTransferSyntax,
    UID_LittleEndianImplicitTransferSyntax,
    UID_BigEndianExplicitTransferSyntax,
    UID_DeflatedExplicitVRLittleEndianTransferSyntax,
    UID_JPEGProcess14SV1TransferSyntax,
    UID_JPEGProcess14TransferSyntax,
    UID_JPEGLSLosslessTransferSyntax,
    UID_JPEGLSLossyTransferSyntax,
    UID_RLELosslessTransferSyntax,
};

// A UID we are willing to put in a path: 1-64 characters of digits and dots.
bool safe_uid(const std::string &uid) {
    if (uid.empty() || uid.size() > 64 || uid[0] == '.') return false;
    for (char c : uid)
        if (!((c >= '0' && c <= '9') || c == '.')) return false;
    return uid.find("..") == std::string::npos;
}

class PerfdSCP : public DcmThreadSCP {
public:
    explicit PerfdSCP(pdcm_scp *owner) : owner_(owner) {}
    // The acceptor thread asked the owner already (before the association took a slot);
    // DcmSCP's checks during negotiation then see that answer instead of asking again.
    void setDecision(int decision) { decision_ = decision; }

protected:
    OFBool checkCallingAETitleAccepted(const OFString &) override { return decide() != PDCM_REFUSE_CALLING_AE; }
    // DcmSCP asks about the host before the AE title; each check refuses only for its own
    // reason so the peer hears the right one ("Calling AE Title Not Recognized").
    OFBool checkCallingHostAccepted(const OFString &) override { return decide() != PDCM_REFUSE_HOST; }

    OFCondition handleIncomingCommand(T_DIMSE_Message *msg, const DcmPresentationContextInfo &info) override {
        if (msg->CommandField != DIMSE_C_STORE_RQ) return DcmThreadSCP::handleIncomingCommand(msg, info);
        T_DIMSE_C_StoreRQ &req = msg->msg.CStoreRQ;
        T_ASC_PresentationContextID presID = info.presentationContextID;
        std::string reason;
        Uint16 status;
        if (diskLow(reason)) {
            // The dataset must still be read off the wire; it is dropped, never spooled.
            DcmDataset *ds = nullptr;
            OFCondition cond = receiveSTORERequest(req, presID, ds);
            delete ds;
            if (cond.bad()) return cond;
            status = STATUS_STORE_Refused_OutOfResources;
        } else {
            // Received straight into a spool file, exactly as sent (into a blank from the
            // reserve when there is one); writeback starts while the transfer is still
            // running so the final fsync has little left to do.
            OFCondition cond;
            FILE *blank = nullptr;
            if (owner_->blanks) {
                receiving_ = owner_->blanks->take();
                // Gone (reconciliation cleans .incoming at start-up): a new file instead.
                if (!receiving_.empty() && !(blank = fopen(receiving_.c_str(), "r+b"))) unlink(receiving_.c_str());
            }
            if (blank) {
                cond = receiveInto(req, presID, blank, receiving_);
            } else {
                char name[96];
                snprintf(name, sizeof name, "/tmp-%lx-%lu.dcm", (unsigned long)pthread_self(), ++counter_);
                receiving_ = owner_->incoming_dir + name;
                cond = receiveSTORERequest(req, presID, OFString(receiving_.c_str()));
            }
            closeWriteback();
            if (owner_->blanks) owner_->blanks->touch();
            if (cond.bad()) {
                unlink(receiving_.c_str());
                owner_->log(2, std::string("C-STORE from ") + getPeerAETitle().c_str() + " could not be received: " + cond.text());
                return cond;
            }
            // The file's fdatasync starts now and runs while store() parses it.
            const std::string tmp = receiving_;
            side_.start([tmp] { return pdcm::fsync_path(tmp, false); });
            status = store(req, receiving_, reason);
            side_.wait();
            if (status != STATUS_Success) unlink(receiving_.c_str());
        }
        if (status != STATUS_Success && owner_->cb.reject) {
            pdcm_assoc_info peer = peerInfo();
            owner_->cb.reject(owner_->cb.ctx, &peer, status, reason.c_str());
        }
        return sendSTOREResponse(presID, req, status);
    }

    // Called for every PDV received: every 64 KiB, ask the kernel to start writing the
    // spool file out (SYNC_FILE_RANGE_WRITE does not wait).
    void notifyRECEIVEProgress(const unsigned long byteCount) override { kick(byteCount); }

public:
    // The association, for receiving into a file DCMTK did not open (DcmSCP keeps its own private).
    void setAssociation(T_ASC_Association *assoc) { assoc_ = assoc; }

private:
    T_ASC_Association *assoc_ = nullptr;

    static void progress(void *self, unsigned long byteCount) { static_cast<PerfdSCP *>(self)->kick(byteCount); }

    // What DCMTK's receive-to-file does (file meta information for the request and the
    // accepted transfer syntax, then the data set exactly as it arrives), but into a file
    // that is already open: `f` is rewritten from byte 0 and cut to what was written.
    OFCondition receiveInto(T_DIMSE_C_StoreRQ &req, T_ASC_PresentationContextID presID, FILE *f, const std::string &path) {
        unsigned long long length = 0;
        OFCondition cond;
        {
            DcmOutputFileStream out(f);   // closes f
            T_ASC_PresentationContext pc;
            cond = assoc_ ? ASC_findAcceptedPresentationContext(assoc_->params, presID, &pc)
                          : makeOFCondition(OFM_dcmnet, DIMSEC_INVALIDPRESENTATIONCONTEXTID, OF_error, "no association");
            DcmMetaInfo meta;
            const Uint8 version[2] = {0, 1};
            if (cond.good()) cond = meta.putAndInsertUint8Array(DCM_FileMetaInformationVersion, version, 2);
            if (cond.good()) cond = meta.putAndInsertString(DCM_MediaStorageSOPClassUID, req.AffectedSOPClassUID);
            if (cond.good()) cond = meta.putAndInsertString(DCM_MediaStorageSOPInstanceUID, req.AffectedSOPInstanceUID);
            if (cond.good()) cond = meta.putAndInsertString(DCM_TransferSyntaxUID, pc.acceptedTransferSyntax);
            if (cond.good()) cond = meta.putAndInsertString(DCM_ImplementationClassUID, OFFIS_IMPLEMENTATION_CLASS_UID);
            if (cond.good()) cond = meta.putAndInsertString(DCM_ImplementationVersionName, OFFIS_DTK_IMPLEMENTATION_VERSION_NAME2);
            if (cond.good()) cond = meta.putAndInsertString(DCM_SourceApplicationEntityTitle, assoc_->params->DULparams.callingAPTitle);
            if (cond.good())
                cond = meta.computeGroupLengthAndPadding(EGL_withGL, EPD_noChange, META_HEADER_DEFAULT_TRANSFERSYNTAX, EET_UndefinedLength);
            if (cond.good()) {
                meta.transferInit();
                cond = meta.write(out, META_HEADER_DEFAULT_TRANSFERSYNTAX, EET_ExplicitLength, nullptr);
                meta.transferEnd();
            }
            T_ASC_PresentationContextID used = presID;
            if (cond.good())
                cond = DIMSE_receiveDataSetInFile(assoc_, getDIMSEBlockingMode(), getDIMSETimeout(), &used, &out, &PerfdSCP::progress, this);
            else
                ignoreDataset();
            if (cond.good() && used != presID)
                cond = makeOFCondition(OFM_dcmnet, DIMSEC_INVALIDPRESENTATIONCONTEXTID, OF_error,
                                       "the data set arrived on another presentation context than its command");
            if (cond.good()) {
                out.flush();
                if (!out.good()) cond = out.status();
                // The stream's flush leaves the tail in stdio's buffer, written by the fclose
                // in its destructor, whose result nobody sees: push it out here, where a full
                // disk is still an error rather than zeros where pixel data should be.
                if (cond.good() && fflush(f) != 0)
                    cond = makeOFCondition(OFM_dcmnet, DIMSEC_OUTOFRESOURCES, OF_error, strerror(errno));
            }
            length = (unsigned long long)out.tell();
        }
        if (cond.good() && truncate(path.c_str(), (off_t)length) != 0)
            cond = makeOFCondition(OFM_dcmnet, DIMSEC_OUTOFRESOURCES, OF_error, strerror(errno));
        return cond;
    }

    void ignoreDataset() {
        DIC_UL bytes = 0, pdvs = 0;
        DIMSE_ignoreDataSet(assoc_, getDIMSEBlockingMode(), getDIMSETimeout(), &bytes, &pdvs);
    }

    void kick(const unsigned long byteCount) {
        if (receiving_.empty() || byteCount < kicked_ + (64u << 10)) return;
        if (wbfd_ < 0) wbfd_ = open(receiving_.c_str(), O_RDONLY);
        if (wbfd_ >= 0) sync_file_range(wbfd_, 0, 0, SYNC_FILE_RANGE_WRITE);
        kicked_ = byteCount;
    }

private:
    pdcm_scp *owner_;
    SideThread side_;
    int decision_ = -1;
    std::string receiving_;
    unsigned long counter_ = 0, kicked_ = 0;
    int wbfd_ = -1;

    void closeWriteback() {
        if (wbfd_ >= 0) close(wbfd_);
        wbfd_ = -1;
        kicked_ = 0;
    }

    bool diskLow(std::string &reason) {
        struct statvfs vfs;
        if (statvfs(owner_->spool_dir.c_str(), &vfs) != 0) return false;
        uint64_t freeBytes = uint64_t(vfs.f_bavail) * vfs.f_frsize;
        if (freeBytes >= owner_->min_free_bytes) return false;
        reason = "spool " + owner_->spool_dir + " has " + std::to_string(freeBytes / (1024 * 1024)) +
                 " MiB free, below min_free_disk_gb; free disk space or lower the limit";
        return true;
    }
    std::string calling_, called_, host_;

    pdcm_assoc_info peerInfo() {
        calling_ = getPeerAETitle().c_str();
        called_ = getCalledAETitle().c_str();
        host_ = getPeerIP().c_str();
        return pdcm_assoc_info{calling_.c_str(), called_.c_str(), host_.c_str()};
    }

    int decide() {
        if (decision_ >= 0) return decision_;
        pdcm_assoc_info info = peerInfo();
        char reason[512] = {0};
        decision_ = owner_->cb.accept ? owner_->cb.accept(owner_->cb.ctx, &info, reason, sizeof reason) : PDCM_ACCEPT;
        return decision_;
    }

    // What is decided on the received file before DCMTK reads it: the room it leaves on the
    // disk (the guard before receiving cannot know an instance's size), its size, and the
    // bounds of its structure (pdcm_scan.cpp). 0, or the status to answer.
    Uint16 precheck(const std::string &tmp, std::string &reason) {
        struct stat st;
        if (stat(tmp.c_str(), &st) != 0) {
            reason = "cannot stat " + tmp + ": " + strerror(errno);
            return STATUS_STORE_Refused_OutOfResources;
        }
        const uint64_t size = uint64_t(st.st_size);
        if (size > PDCM_MAX_INSTANCE_BYTES) {
            reason = "the instance is " + std::to_string(size >> 20) + " MiB; perfd keeps instances of up to " +
                     std::to_string(PDCM_MAX_INSTANCE_BYTES >> 20) + " MiB";
            return STATUS_STORE_Refused_OutOfResources;
        }
        // The file is written, so its blocks are already counted as used.
        struct statvfs vfs;
        if (statvfs(owner_->spool_dir.c_str(), &vfs) == 0) {
            const uint64_t freeBytes = uint64_t(vfs.f_bavail) * vfs.f_frsize;
            if (freeBytes < owner_->min_free_bytes) {
                reason = "keeping this " + std::to_string(size >> 20) + " MiB instance would leave spool " + owner_->spool_dir +
                         " " + std::to_string(freeBytes >> 20) + " MiB free, below min_free_disk_gb (" +
                         std::to_string(owner_->min_free_bytes >> 20) + " MiB); free disk space or lower the limit";
                return STATUS_STORE_Refused_OutOfResources;
            }
        }
        std::string why;
        if (!pdcm::scan_file(tmp, pdcm::ScanLimits(), why)) {
            reason = "the received data set is refused unparsed: " + why;
            return STATUS_STORE_Error_CannotUnderstand;
        }
        return STATUS_Success;
    }

    Uint16 store(T_DIMSE_C_StoreRQ &req, const std::string &tmp, std::string &reason) {
        if (Uint16 refused = precheck(tmp, reason)) return refused;
        // Parse what arrived; values over 4 KiB (pixel data) stay on disk, unread.
        DcmFileFormat ff;
        OFCondition lc = ff.loadFile(tmp.c_str(), EXS_Unknown, EGL_noChange, 4096, ERM_autoDetect);
        if (lc.bad()) {
            reason = std::string("the received dataset cannot be parsed: ") + lc.text();
            return STATUS_STORE_Error_CannotUnderstand;
        }
        DcmDataset *ds = ff.getDataset();
        const std::string sopClass = pdcm::get_string(ds, DCM_SOPClassUID);
        const std::string sop = pdcm::get_string(ds, DCM_SOPInstanceUID);
        const std::string study = pdcm::get_string(ds, DCM_StudyInstanceUID);
        const std::string series = pdcm::get_string(ds, DCM_SeriesInstanceUID);
        struct { const char *name; const std::string &value; } uids[] = {
            {"SOPClassUID", sopClass}, {"SOPInstanceUID", sop}, {"StudyInstanceUID", study}, {"SeriesInstanceUID", series}};
        for (auto &u : uids) {
            if (u.value.empty()) {
                reason = std::string("dataset has no ") + u.name + "; the sender must fill it";
                return STATUS_STORE_Error_DataSetDoesNotMatchSOPClass;
            }
            if (!safe_uid(u.value)) {
                reason = std::string(u.name) + " \"" + u.value + "\" is not a valid UID (digits and dots, at most 64)";
                return STATUS_STORE_Error_DataSetDoesNotMatchSOPClass;
            }
        }
        if (sop != req.AffectedSOPInstanceUID) {
            reason = "dataset SOPInstanceUID " + sop + " differs from the C-STORE request's " + req.AffectedSOPInstanceUID;
            return STATUS_STORE_Error_DataSetDoesNotMatchSOPClass;
        }
        if (sopClass != UID_CTImageStorage && sopClass != UID_EnhancedCTImageStorage) {
            reason = "SOP class " + sopClass + " is not CT Image Storage or Enhanced CT Image Storage";
            return STATUS_STORE_Error_DataSetDoesNotMatchSOPClass;
        }
        // Image size, bit depth and pixel data against what perfd decodes, for every syntax.
        if (Uint16 refused = pdcm::check_instance(ds, pdcm::ImageLimits(), reason)) {
            reason = "instance " + sop + " " + reason;
            return refused;
        }

        // The file's own fdatasync (started when the transfer ended) must be done before it
        // takes its final name, so a final name never holds a partial file. Then it is
        // renamed into its series directory, and the directory's fsync (shared with
        // concurrent stores) runs on the side thread while this one commits the row. The
        // answer waits for both: the instance is on disk and indexed before anyone is told.
        // (A power cut between the commit and the directory fsync can leave a row whose file
        // is gone; it was never acknowledged, and start-up reconciliation drops it.)
        const std::string dir = owner_->spool_dir + "/" + series;
        bool newDir = false;
        if (mkdir(dir.c_str(), 0700) == 0) {
            newDir = true;
        } else if (errno == EEXIST) {
            std::lock_guard<std::mutex> g(owner_->durableMutex);
            newDir = owner_->durableDirs.count(dir) == 0;
        } else {
            reason = "cannot create " + dir + ": " + strerror(errno);
            return STATUS_STORE_Refused_OutOfResources;
        }
        // A SOP instance already in the spool keeps its file: the new copy takes a name of
        // its own beside it (never over it), and the store callback decides — an identical
        // re-send is kept once, other content is refused. '-' is in no UID, so the other
        // names cannot be another instance's.
        std::string finalPath = dir + "/" + sop + ".dcm";
        E_TransferSyntax xfer = ds->getOriginalXfer();
        auto renameNew = [&tmp](const std::string &to) -> int {
            if (renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
            if (errno != EINVAL && errno != ENOSYS) return errno;
            // A file system without RENAME_NOREPLACE: check, then rename.
            if (access(to.c_str(), F_OK) == 0) return EEXIST;
            return rename(tmp.c_str(), to.c_str()) == 0 ? 0 : errno;
        };
        int e = side_.wait();
        if (e == 0) e = renameNew(finalPath);
        for (int n = 1; e == EEXIST && n < 1000; n++) {
            finalPath = dir + "/" + sop + "-" + std::to_string(n) + ".dcm";
            e = renameNew(finalPath);
        }
        if (e != 0) {
            reason = "cannot make " + finalPath + " durable: " + strerror(e);
            return STATUS_STORE_Refused_OutOfResources;
        }
        pdcm_scp *owner = owner_;
        side_.start([owner, dir, newDir] {
            int rc = newDir ? owner->dirSyncer.sync(owner->spool_dir) : 0;
            if (newDir && rc == 0) {
                std::lock_guard<std::mutex> g(owner->durableMutex);
                owner->durableDirs.insert(dir);
            }
            return rc != 0 ? rc : owner->dirSyncer.sync(dir);
        });
        struct stat st;
        uint64_t size = stat(finalPath.c_str(), &st) == 0 ? uint64_t(st.st_size) : 0;

        pdcm_assoc_info peer = peerInfo();
        pdcm::HeaderFields header;
        header.read(ds, xfer);
        pdcm_store_info si{};
        si.path = finalPath.c_str();
        si.header = header.fields;
        si.calling_ae = peer.calling_ae;
        si.peer_host = peer.peer_host;
        si.file_size = size;
        char buf[512] = {0};
        if (owner_->blanks) owner_->blanks->learn(size);
        Uint16 status = owner_->cb.store ? owner_->cb.store(owner_->cb.ctx, &si, buf, sizeof buf) : STATUS_Success;
        e = side_.wait();
        if (status == STATUS_Success && e != 0) {
            // Indexed but maybe not on disk: not acknowledged. The sender's retry replaces it.
            reason = "cannot make " + finalPath + " durable: " + strerror(e);
            return STATUS_STORE_Refused_OutOfResources;
        }
        if (status != STATUS_Success) {
            reason = buf;
            // Not acknowledged, so not kept (the sender will retry). The name is this
            // store's own: an earlier, acknowledged copy of the instance is never under it.
            unlink(finalPath.c_str());
        }
        return status;
    }
};

}  // namespace

// ---- Accepting connections -------------------------------------------------------------
//
// DCMTK's ASC_receiveAssociation does three things on the calling thread: accept() on the
// listening socket, the TLS handshake, and reading the whole A-ASSOCIATE-RQ. With one
// accept thread, every connection that stalls in the second or third step holds all others
// back (a trickling sender for as long as it trickles: each byte restarts DCMTK's read
// timeout). DCMTK 3.6.7 offers no way to hand it a socket accepted elsewhere except the
// process-wide dcmExternalSocketHandle (one value for all threads, so not usable from
// several), and its DUL state machine is private. What it does offer is the transport
// layer: right after accept() it calls the network's DcmTransportLayer::createConnection
// with the new socket, before the handshake and before reading anything. So:
//
// - A fixed pool of kAcceptorThreads threads per listener all run ASC_receiveAssociation on
//   the one network, leader/followers style: one of them (the leader) waits in accept();
//   as soon as it has a socket (createConnection) it hands the listening role to an idle
//   thread and goes on with its own handshake. Only the leader touches the listening socket,
//   so accept() is never raced; the rest of a receive works on its own association key
//   (DcmSCPPool already runs DUL receives beside DUL work on other threads).
// - createConnection (GuardedLayer) admits the connection: at most max_per_host open
//   connections from one address (pending and established; over it, the socket is closed at
//   once), then puts it under a whole-handshake deadline: a watchdog thread shutdown()s the
//   socket of any handshake not finished within kHandshakeSeconds of its accept, which makes
//   DCMTK's (and OpenSSL's) blocked read return at once. The watchdog shuts down its own
//   dup() of the socket, so a socket DCMTK already closed (and whose number accept() may have
//   reused) is never touched.
// - With the A-ASSOCIATE-RQ read, the same thread asks the owner about the calling AE and
//   host; a refusal is answered (A-ASSOCIATE-RJ) and the socket closed at once. Only then does
//   the association take one of max_associations slots and get a worker thread.
//
// Worst case for a scanner: kAcceptorThreads handshakes can be pending per listener. While
// fewer are, a scanner's connection is accepted at once and its handshake does not wait for
// anyone else's. Hostile sockets from one address hold at most max_connections_per_host
// (default 16 < 32) of them. Only when hostile peers hold all 32 (which takes at least 2
// addresses) does a new connection wait in the kernel's backlog, and each of those threads
// is free again within kHandshakeSeconds: a scanner with Q connections queued ahead of it
// waits at most kHandshakeSeconds * ceil((Q + 1) / 32). Under N <= 31 hostile sockets it
// waits for none of them (N = 16: measured in HostileNetworkTests); under N = 64 from
// several hosts, at most 2 x 3 s = 6 s.
namespace {

constexpr int kAcceptorThreads = 32;
constexpr int kHandshakeSeconds = 3;

}  // namespace

// One connection in the hands of one acceptor thread, from accept() to hand-over.
struct Handshake {
    bool accepted = false;     // createConnection ran: a socket exists
    bool expired = false;      // the deadline cut it off
    int watchFd = -1;          // our dup() of the socket, for the watchdog
    std::chrono::steady_clock::time_point deadline;
    std::string host;
    const char *refusedKind = nullptr;
    std::string refusedWhy;
};

namespace {

thread_local pdcm_scp *tl_scp = nullptr;
thread_local Handshake *tl_handshake = nullptr;

std::string peer_address(int sock) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    char buf[INET6_ADDRSTRLEN] = {0};
    if (getpeername(sock, (sockaddr *)&addr, &len) != 0) return "";
    if (addr.ss_family == AF_INET) inet_ntop(AF_INET, &((sockaddr_in *)&addr)->sin_addr, buf, sizeof buf);
    else if (addr.ss_family == AF_INET6) inet_ntop(AF_INET6, &((sockaddr_in6 *)&addr)->sin6_addr, buf, sizeof buf);
    return buf;
}

// Called by the acceptor thread inside DCMTK right after accept(): passes the listening role
// on, then admits the connection (per-host limit) and arms its deadline. False: refused, and
// DCMTK closes the socket.
bool admit(pdcm_scp *scp, Handshake *h, int sock) {
    std::string host = peer_address(sock);
    std::lock_guard<std::mutex> g(scp->netMutex);
    scp->listening = false;
    scp->netCv.notify_all();
    h->accepted = true;
    h->host = host;
    int &open = scp->perHost[host];
    if (open >= scp->max_per_host) {
        if (open == 0) scp->perHost.erase(host);
        h->refusedKind = "host_limit";
        h->refusedWhy = std::to_string(scp->max_per_host) + " connections from " + host +
                        " already open (raise max_connections_per_host if one host runs that many scanners)";
        return false;
    }
    // Without its own descriptor the watchdog could not cut the handshake off, and a peer
    // trickling bytes would hold this thread as long as it liked: refuse instead.
    h->watchFd = fcntl(sock, F_DUPFD_CLOEXEC, 0);
    if (h->watchFd < 0) {
        if (open == 0) scp->perHost.erase(host);
        h->refusedKind = "fd_limit";
        h->refusedWhy = std::string("no file descriptor left to watch the handshake (") + strerror(errno) +
                        "); raise LimitNOFILE in the unit or lower max_connections_per_host";
        return false;
    }
    open++;
    h->deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kHandshakeSeconds);
    scp->handshakes.insert(h);
    return true;
}

// Takes the connection off the deadline watch; true when the deadline had already cut it off.
bool disarm(pdcm_scp *scp, Handshake *h) {
    std::lock_guard<std::mutex> g(scp->netMutex);
    scp->handshakes.erase(h);
    if (h->watchFd >= 0) close(h->watchFd);
    h->watchFd = -1;
    return h->expired;
}

void watchdog(pdcm_scp *scp, const std::atomic<bool> &running) {
    std::unique_lock<std::mutex> g(scp->netMutex);
    while (running.load()) {
        scp->netCv.wait_for(g, std::chrono::milliseconds(100));
        const auto now = std::chrono::steady_clock::now();
        for (Handshake *h : scp->handshakes)
            if (!h->expired && now >= h->deadline) {
                h->expired = true;
                if (h->watchFd >= 0) shutdown(h->watchFd, SHUT_RDWR);
            }
    }
}

// The network's transport layer: DCMTK's own (plain, or the TLS one it wraps), with the
// admission above in front of every connection an acceptor thread receives.
class GuardedLayer : public DcmTransportLayer {
public:
    explicit GuardedLayer(DcmTransportLayer *inner) : inner_(inner) {}
    ~GuardedLayer() override { delete inner_; }
    DcmTransportConnection *createConnection(DcmNativeSocketType sock, OFBool secure) override {
        if (tl_scp && tl_handshake && !admit(tl_scp, tl_handshake, sock)) return nullptr;
        return inner_ ? inner_->createConnection(sock, secure) : DcmTransportLayer::createConnection(sock, secure);
    }

private:
    DcmTransportLayer *inner_;
};

void drop(T_ASC_Association *&assoc) {
    if (!assoc) return;
    ASC_dropAssociation(assoc);
    ASC_destroyAssociation(&assoc);
}

// After ASC_receiveAssociation returned: refuse, or hand the association to a worker.
void settle(pdcm_scp *scp, Handshake &h, T_ASC_Association *assoc, OFCondition cond, DcmSharedSCPConfig &shared) {
    if (!h.accepted) {
        // No connection: the wait for one timed out, or accept() failed (EMFILE...): nothing
        // to refuse.
        if (cond != DUL_NOASSOCIATIONREQUEST) scp->log(2, std::string("cannot accept a connection: ") + cond.text());
        if (assoc) ASC_destroyAssociation(&assoc);
        return;
    }
    if (h.refusedKind) {
        scp->log(2, "refused a connection from " + h.host + ": " + h.refusedWhy);
        scp->refused(h.host, h.refusedKind, h.refusedWhy);
        drop(assoc);
        return;
    }
    const std::string host = h.host;
    auto finish = [&] {
        drop(assoc);
        disarm(scp, &h);
        scp->releaseHost(host);
    };
    bool expired;
    {
        std::lock_guard<std::mutex> g(scp->netMutex);
        expired = h.expired;
    }
    if (cond.bad() || expired) {
        // A stalled or garbage handshake, a port scan, a failed TLS handshake, a peer that
        // vanished: log, report, keep serving.
        const bool late = disarm(scp, &h) || cond == DUL_READTIMEOUT;
        const char *kind = late ? "handshake_timeout" : scp->secure ? "tls" : "not_dicom";
        std::string why = late ? "no complete " + std::string(scp->secure ? "TLS handshake and " : "") + "A-ASSOCIATE-RQ within " +
                                     std::to_string(kHandshakeSeconds) + " s of connecting"
                          : scp->secure ? std::string("TLS connection failed (no trusted client certificate, or not TLS): ") + cond.text()
                                        : std::string("connection did not open a DICOM association: ") + cond.text();
        scp->log(2, "refused a connection from " + host + ": " + why);
        scp->refused(host, kind, why);
        finish();
        return;
    }
    if (!assoc->params->DULparams.applicationContextName[0]) {
        // DCMTK reports a peer that closed before sending anything (a port probe) as a
        // received request with every field empty: nothing was asked, nothing is refused.
        scp->log(0, "a connection from " + host + " closed without an A-ASSOCIATE-RQ");
        finish();
        return;
    }
    // The calling AE and host are decided before the association takes a slot, so refused
    // peers never hold one; the refusal goes out and the socket is closed at once.
    // The peer's part is done: the deadline stops here, before the decision, which may wait
    // on a name lookup (allowed_peers by host name) that must not count against the peer.
    if (disarm(scp, &h)) {
        // Cut off by the deadline just as the request completed: the socket is shut down.
        scp->refused(host, "handshake_timeout", "A-ASSOCIATE-RQ completed after the handshake deadline");
        drop(assoc);
        scp->releaseHost(host);
        return;
    }
    T_ASC_Parameters *params = assoc->params;
    pdcm_assoc_info info{params->DULparams.callingAPTitle, params->DULparams.calledAPTitle,
                         params->DULparams.callingPresentationAddress};
    char reason[512] = {0};
    const int decision = scp->cb.accept ? scp->cb.accept(scp->cb.ctx, &info, reason, sizeof reason) : PDCM_ACCEPT;
    if (decision != PDCM_ACCEPT) {
        T_ASC_RejectParameters rej{ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER,
                                   decision == PDCM_REFUSE_CALLING_AE ? ASC_REASON_SU_CALLINGAETITLENOTRECOGNIZED
                                                                      : ASC_REASON_SU_NOREASON};
        ASC_rejectAssociation(assoc, &rej);
        finish();
        return;
    }
    // A slot, or a transient refusal: past max_associations, or once the listener is stopping
    // (the drain waits only for associations already running). Decided under the lock,
    // answered outside it, so finishing workers are not held up by a socket write.
    bool full = false, stopping = false;
    {
        std::lock_guard<std::mutex> g(scp->mutex);
        stopping = scp->stop.load();
        full = scp->active >= scp->max_associations;
        if (!full && !stopping) scp->active++;
    }
    if (full || stopping) {
        T_ASC_RejectParameters rej{ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
                                   ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED};
        ASC_rejectAssociation(assoc, &rej);
        if (full && !stopping) {
            const std::string why = std::to_string(scp->max_associations) + " associations already running (raise max_associations in the config)";
            scp->log(2, "refused an association from " + std::string(info.calling_ae) + " at " + host + ": " + why);
            scp->refused(host, "association_limit", why);
        }
        finish();
        return;
    }
    auto release = [scp, host] {
        scp->releaseHost(host);
        std::lock_guard<std::mutex> g(scp->mutex);
        scp->active--;
        scp->idle.notify_all();
    };
    try {
        std::thread([scp, assoc, decision, release, &shared] {
            pdcm::set_established_receive_timeout(assoc);
            {
                PerfdSCP worker(scp);
                worker.setSharedConfig(shared);
                worker.setAssociation(assoc);
                worker.setDecision(decision);
                OFCondition r = worker.run(assoc);
                if (r.bad()) scp->log(1, std::string("association ended with: ") + r.text());
            }
            release();
        }).detach();
    } catch (const std::system_error &e) {
        // No thread to be had (the unit's TasksMax, or memory): refuse this one, keep serving.
        T_ASC_RejectParameters rej{ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
                                   ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED};
        ASC_rejectAssociation(assoc, &rej);
        drop(assoc);
        release();
        const std::string why = std::string("cannot start a thread for the association: ") + e.what();
        scp->log(2, "refused an association from " + host + ": " + why);
        scp->refused(host, "association_limit", why);
    }
}

void acceptor(pdcm_scp *scp, DcmSharedSCPConfig &shared) {
    tl_scp = scp;
    for (;;) {
        {
            std::unique_lock<std::mutex> g(scp->netMutex);
            while (scp->listening && !scp->stop.load()) scp->netCv.wait_for(g, std::chrono::milliseconds(200));
            if (scp->stop.load()) return;
            scp->listening = true;
        }
        Handshake h;
        tl_handshake = &h;
        T_ASC_Association *assoc = nullptr;
        // The largest PDU DCMTK handles (128 KiB, not the 16 KiB default): a 512×512 slice
        // arrives in 5 PDUs instead of 33, each read, written and polled once.
        OFCondition cond = ASC_receiveAssociation(scp->net, &assoc, ASC_MAXIMUMPDUSIZE, nullptr, nullptr,
                                                  scp->secure ? OFTrue : OFFalse, DUL_NOBLOCK, 1);
        tl_handshake = nullptr;
        if (!h.accepted) {
            // A failed accept() (out of descriptors...) pauses the listening thread, so a
            // persistent failure neither spins nor floods the log.
            if (cond != DUL_NOASSOCIATIONREQUEST) std::this_thread::sleep_for(std::chrono::milliseconds(100));
            std::lock_guard<std::mutex> g(scp->netMutex);
            scp->listening = false;
            scp->netCv.notify_all();
        }
        settle(scp, h, assoc, cond, shared);
    }
}

}  // namespace

extern "C" pdcm_scp *pdcm_scp_create(const pdcm_scp_config *cfg, const pdcm_scp_callbacks *cb, char *err, size_t errlen) {
    pdcm_init();
    auto *scp = new pdcm_scp();
    scp->ae_title = cfg->ae_title ? cfg->ae_title : "PERFD";
    scp->spool_dir = cfg->spool_dir ? cfg->spool_dir : ".";
    scp->min_free_bytes = cfg->min_free_bytes;
    scp->max_associations = cfg->max_associations > 0 ? cfg->max_associations : 8;
    scp->max_per_host = cfg->max_connections_per_host > 0 ? cfg->max_connections_per_host : 16;
    scp->cb = *cb;
    scp->incoming_dir = scp->spool_dir + "/.incoming";
    if (mkdir(scp->incoming_dir.c_str(), 0700) != 0 && errno != EEXIST) {
        pdcm::set_text(err, errlen, "cannot create " + scp->incoming_dir + ": " + strerror(errno));
        delete scp;
        return nullptr;
    }
    if (cfg->spool_reserve_bytes > 0)
        scp->blanks.reset(new BlankPool(scp->incoming_dir, cfg->spool_reserve_bytes, scp->min_free_bytes));

    DcmSCPConfig &c = scp->config;
    c.setAETitle(scp->ae_title.c_str());
    c.setPort(cfg->port);
    c.setHostLookupEnabled(OFFalse);
    c.setACSETimeout(cfg->acse_timeout_s > 0 ? cfg->acse_timeout_s : 10);
    c.setDIMSETimeout(cfg->dimse_timeout_s > 0 ? cfg->dimse_timeout_s : 60);
    c.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
    c.setProgressNotificationMode(OFTrue);
    OFList<OFString> xfers;
    for (const char *ts : kTransferSyntaxes) xfers.push_back(ts);
    OFList<OFString> verification;
    verification.push_back(UID_LittleEndianExplicitTransferSyntax);
    verification.push_back(UID_LittleEndianImplicitTransferSyntax);
    verification.push_back(UID_BigEndianExplicitTransferSyntax);
    OFCondition cond = c.addPresentationContext(UID_VerificationSOPClass, verification);
    for (const char *sc : kStorageClasses)
        if (cond.good()) cond = c.addPresentationContext(sc, xfers);
    if (cond.good()) cond = c.setAndCheckAssociationProfile("DEFAULT");
    if (cond.bad()) {
        pdcm::set_text(err, errlen, std::string("cannot configure presentation contexts: ") + cond.text());
        delete scp;
        return nullptr;
    }
    // Reverse DNS on the accept path (DCMTK looks the peer up unless told not to) would let a
    // slow resolver hold the listening thread; allowed_peers compares addresses anyway.
    dcmDisableGethostbyaddr.set(OFTrue);
    // The timeout is DCMTK's wait for the first PDU; the whole-handshake deadline
    // (kHandshakeSeconds, see above) is shorter and is what ends a stalled connection.
    cond = ASC_initializeNetwork(NET_ACCEPTOR, cfg->port, kHandshakeSeconds + 2, &scp->net);
    if (cond.bad()) {
        pdcm::set_text(err, errlen, "cannot listen on port " + std::to_string(cfg->port) + ": " + cond.text() +
                                        " (is another DICOM service using it? change `port` in the config)");
        delete scp;
        return nullptr;
    }
    DcmTransportLayer *layer = nullptr;
    if (cfg->tls) {
        std::string why;
        layer = pdcm::make_tls_layer(true, cfg->tls, why);
        if (!layer) {
            pdcm::set_text(err, errlen, "TLS listener on port " + std::to_string(cfg->port) + ": " +
                                            (why.empty() ? "cannot attach the TLS layer" : why));
            ASC_dropNetwork(&scp->net);
            delete scp;
            return nullptr;
        }
        scp->secure = true;
    }
    if (ASC_setTransportLayer(scp->net, new GuardedLayer(layer), 1).bad()) {
        pdcm::set_text(err, errlen, "listener on port " + std::to_string(cfg->port) + ": cannot attach the transport layer");
        ASC_dropNetwork(&scp->net);
        delete scp;
        return nullptr;
    }
    // Read back the port the kernel gave us (matters when 0 was asked for).
    auto *key = reinterpret_cast<PRIVATE_NETWORKKEY *>(scp->net->network);
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    scp->port = cfg->port;
    if (key && getsockname(key->networkSpecific.TCP.listenSocket, (sockaddr *)&addr, &len) == 0) {
        if (addr.ss_family == AF_INET) scp->port = ntohs(((sockaddr_in *)&addr)->sin_port);
        else if (addr.ss_family == AF_INET6) scp->port = ntohs(((sockaddr_in6 *)&addr)->sin6_port);
    }
    return scp;
}

extern "C" uint16_t pdcm_scp_port(const pdcm_scp *scp) { return scp->port; }

extern "C" int pdcm_scp_active_associations(const pdcm_scp *scp) {
    auto *s = const_cast<pdcm_scp *>(scp);
    std::lock_guard<std::mutex> g(s->mutex);
    return s->active;
}

extern "C" int pdcm_scp_run(pdcm_scp *scp) {
    DcmSharedSCPConfig shared(scp->config);
    std::atomic<bool> watching{true};
    std::thread watch(watchdog, scp, std::cref(watching));
    std::vector<std::thread> acceptors;
    for (int i = 0; i < kAcceptorThreads; i++) acceptors.emplace_back(acceptor, scp, std::ref(shared));
    // Each returns once stop is set: the listening one within a second, the others when
    // their handshake is settled (the deadline still runs).
    for (auto &t : acceptors) t.join();
    watching.store(false);
    watch.join();
    // Drain: the associations already running finish their transfers.
    std::unique_lock<std::mutex> g(scp->mutex);
    scp->idle.wait(g, [scp] { return scp->active == 0; });
    return 0;
}

extern "C" void pdcm_scp_stop(pdcm_scp *scp) { scp->stop.store(true); }

extern "C" void pdcm_scp_destroy(pdcm_scp *scp) {
    if (!scp) return;
    if (scp->net) ASC_dropNetwork(&scp->net);
    delete scp;
}
