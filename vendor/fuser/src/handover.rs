//! Tessera patch: a FUSE connection that outlives the process serving it.
//!
//! A supervisor mounts and keeps the `/dev/fuse` descriptor ([`HeldMount`]); each serving
//! process gets a copy of it. The first one answers INIT ([`Session::from_fd`]) and keeps
//! the request's bytes ([`Session::init_request`]); a successor replays them
//! ([`Session::resume_from_fd`]): its filesystem's `init` runs and the session knows the
//! negotiated protocol, but nothing is sent, because the kernel has its answer already.
//! A planned stop ([`SessionStopper`]) ends the event loops between requests; after a crash
//! the successor asks the kernel to queue again the requests that were read but never
//! answered ([`Notifier::resend`], `FUSE_NOTIFY_RESEND`, Linux 6.9 and later).

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::fd::BorrowedFd;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::FcntlArg;
use nix::fcntl::OFlag;
use nix::fcntl::fcntl;
use nix::poll::PollFd;
use nix::poll::PollFlags;
use nix::poll::PollTimeout;
use nix::poll::poll;
use nix::unistd::geteuid;
use parking_lot::Mutex;

use crate::Filesystem;
use crate::KernelConfig;
use crate::Request;
use crate::SessionACL;
use crate::channel::Channel;
use crate::dev_fuse::DevFuse;
use crate::ll;
use crate::mnt::Mount;
use crate::mnt::mount_options::Config;
use crate::mnt::mount_options::check_option_conflicts;
use crate::read_buf::FuseReadBuf;
use crate::request::RequestWithSender;
use crate::session::FilesystemHolder;
use crate::session::Session;
use crate::session::SessionEventLoop;
use crate::session::UmountOnDrop;

/// A mount whose connection is served by other processes: it holds the mount and a
/// `/dev/fuse` descriptor, and never reads from it.
#[derive(Debug)]
pub struct HeldMount {
    dev: Arc<DevFuse>,
    mount: Option<Mount>,
}

impl HeldMount {
    /// Mounts at `mountpoint` without answering INIT: the first serving process does.
    pub fn new(mountpoint: &Path, options: &Config) -> io::Result<HeldMount> {
        check_option_conflicts(options)?;
        let (dev, mount) = Mount::new(mountpoint, &options.mount_options, options.acl)?;
        Ok(HeldMount {
            dev,
            mount: Some(mount),
        })
    }

    /// The connection's descriptor, to hand to a serving process.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.dev.as_fd()
    }

    /// False once the file system was unmounted (the connection is aborted or gone).
    pub fn is_mounted(&self) -> bool {
        let mut fds = [PollFd::new(self.dev.as_fd(), PollFlags::empty())];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(0) => true,
            Ok(_) => !fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLERR)),
            Err(_) => true,
        }
    }

    /// Unmounts (a no-op if it was unmounted already).
    pub fn unmount(mut self) -> io::Result<()> {
        match self.mount.take() {
            Some(m) => m.umount(),
            None => Ok(()),
        }
    }
}

/// Takes ownership of descriptor `raw`, inherited from the process that started this one
/// (a supervisor passes its [`HeldMount::fd`] that way), after checking that it is open and
/// is `/dev/fuse` (character device 10:229), so a wrong number cannot close another file.
pub fn inherited_fuse_fd(raw: i32) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: fstat only writes the struct; a closed descriptor gives EBADF.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(raw, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (major, minor) = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || (major, minor) != (10, 229) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {raw} is not /dev/fuse"),
        ));
    }
    // SAFETY: the descriptor is open (fstat succeeded), is /dev/fuse, and the caller says
    // this process owns it (inherited, used by nothing else here).
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Ends a session's event loops (made by [`Session::stopper`]).
#[derive(Debug, Clone)]
pub struct SessionStopper {
    write: Arc<Mutex<Option<File>>>,
}

impl SessionStopper {
    /// Every event loop returns before it reads another request; requests read already
    /// were dispatched (their replies may still be on their way).
    pub fn stop(&self) {
        use std::io::Write;
        if let Some(f) = self.write.lock().as_mut() {
            // One byte left unread wakes every loop's poll.
            let _ = f.write_all(&[1]);
        }
    }
}

impl<FS: Filesystem> Session<FS> {
    /// The INIT request this session answered (`None` for a resumed session: use the bytes
    /// it was resumed with).
    pub fn init_request(&self) -> Option<&[u8]> {
        self.init_request.as_deref()
    }

    /// Serves a connection whose INIT another process answered: `init_request` is what
    /// that process's [`Session::init_request`] returned. The filesystem's `init` runs on
    /// it; nothing is sent to the kernel.
    pub fn resume_from_fd(
        mut filesystem: FS,
        fd: OwnedFd,
        acl: SessionACL,
        config: Config,
        init_request: &[u8],
    ) -> io::Result<Self> {
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        let request = ll::AnyRequest::try_from(init_request)
            .map_err(|e| invalid(format!("saved INIT request: {e}")))?;
        let Ok(ll::Operation::Init(init)) = request.operation() else {
            return Err(invalid("saved request is not an INIT".into()));
        };
        let v = init.version();
        let mut kernel = KernelConfig::new(init.capabilities(), init.max_readahead(), v);
        filesystem.init(Request::ref_cast(request.header()), &mut kernel)?;
        Ok(Session {
            filesystem: FilesystemHolder {
                fs: Some(filesystem),
            },
            ch: Channel::new(Arc::new(DevFuse(File::from(fd)))),
            mount: UmountOnDrop {
                mount: Arc::new(Mutex::new(None)),
            },
            allowed: acl,
            session_owner: geteuid(),
            proto_version: Some(v),
            config,
            init_request: None,
            stop: None,
        })
    }

    /// A handle that ends [`Session::run`] between requests. The connection's descriptor
    /// becomes non-blocking (the loops wait in `poll`), which every process sharing it sees.
    pub fn stopper(&mut self) -> io::Result<SessionStopper> {
        let (read, write) = nix::unistd::pipe()?;
        let flags = OFlag::from_bits_retain(fcntl(self.ch.as_fd(), FcntlArg::F_GETFL)?);
        fcntl(self.ch.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        self.stop = Some(Arc::new(read));
        Ok(SessionStopper {
            write: Arc::new(Mutex::new(Some(File::from(write)))),
        })
    }
}

impl<FS: Filesystem> SessionEventLoop<FS> {
    /// The event loop of a session with a stopper: waits for a request or the stop signal.
    pub(crate) fn stoppable_event_loop(&self, stop: &OwnedFd) -> io::Result<()> {
        let mut buf = FuseReadBuf::new();
        let buf = buf.as_mut();
        loop {
            let mut fds = [
                PollFd::new(self.ch.as_fd(), PollFlags::POLLIN),
                PollFd::new(stop.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                return Ok(());
            }
            let size = match self.ch.receive(buf) {
                Ok(size) => size,
                // Another loop took the request, or it was interrupted: wait again.
                Err(Errno::EAGAIN | Errno::ENOENT | Errno::EINTR) => continue,
                Err(Errno::ENODEV) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            match RequestWithSender::new(self.ch.sender(), &buf[..size]) {
                Some(req) => {
                    if let Ok(ll::Operation::Destroy(_)) = req.request.operation() {
                        req.reply::<crate::ReplyEmpty>().ok();
                        return Ok(());
                    }
                    req.dispatch(self)
                }
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "Invalid request",
                    ));
                }
            }
        }
    }
}
