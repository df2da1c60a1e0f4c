//! The Kubernetes path: containerd's CRI plug-in with Strata as its
//! snapshotter, driven the way the kubelet drives it. A private containerd
//! (own root, state and sockets), Strata's root at the path CRI reports as
//! the image filesystem (`<containerd root>/io.containerd.snapshotter.v1.strata`),
//! a pause image and a test image built from busybox-static and imported,
//! a pod on the host network (no CNI), a container that writes a file,
//! ImageFsInfo and container stats, then stop and remove with nothing left.

mod containerd_support;
mod cri_support;

use std::path::Path;
use std::time::{Duration, Instant};

use containerd_support::image::write_busybox_image_running;
use containerd_support::{prerequisites, Containerd, Strata};
use cri_support::*;
use strata_driver_api::testing::{skip, ScratchDir};

const PAUSE: &str = "docker.io/strata/pause:test";
const IMAGE: &str = "docker.io/strata/busybox:cri";

/// Polls `probe` until it returns `Some`, for up to 30 s.
fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn sandbox_config(logs: &Path) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "strata-pod".into(),
            uid: format!("uid-{}", std::process::id()),
            namespace: "default".into(),
            attempt: 0,
        }),
        log_directory: logs.display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: String::new(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NAMESPACE_NODE,
                    ..Default::default()
                }),
            }),
        }),
        ..Default::default()
    }
}

/// Stops and removes the pod when dropped, so a failing test leaves no
/// sandbox, shim or mount behind (done by then on success).
struct PodGuard<'a> {
    cri: &'a Cri,
    id: String,
}

impl Drop for PodGuard<'_> {
    fn drop(&mut self) {
        for method in [
            "/runtime.v1.RuntimeService/StopPodSandbox",
            "/runtime.v1.RuntimeService/RemovePodSandbox",
        ] {
            let request = SandboxIdRequest {
                pod_sandbox_id: self.id.clone(),
            };
            let _ = self.cri.call::<_, Empty>(method, request);
        }
    }
}

fn rpc<Q, R>(cri: &Cri, method: &'static str, request: Q) -> R
where
    Q: prost::Message + Send + Sync + 'static,
    R: prost::Message + Default + Send + Sync + 'static,
{
    cri.call(method, request)
        .unwrap_or_else(|e| panic!("{method}: {e}"))
}

#[test]
fn cri_pod_on_strata() {
    let test = "cri_pod_on_strata";
    if !prerequisites(test) {
        return;
    }
    let scratch = ScratchDir::new("cri");
    let dir = scratch.path().join("containerd");
    let strata_root = Containerd::root_of(&dir).join("io.containerd.snapshotter.v1.strata");
    std::fs::create_dir_all(Containerd::root_of(&dir)).expect("mkdir containerd root");
    let strata_socket = scratch.path().join("strata.sock");
    let mut strata = match Strata::start(&strata_root, "btrfs", &strata_socket) {
        Ok(s) => s,
        Err(why) => {
            skip(test, &why);
            return;
        }
    };
    let ctrd = Containerd::start_cri(&dir, &strata_socket, PAUSE);
    for (name, cmd, file) in [
        (PAUSE, &["/bin/busybox", "sleep", "100000"][..], "pause.tar"),
        (IMAGE, &["/bin/sh"][..], "busybox.tar"),
    ] {
        let tar = scratch.path().join(file);
        write_busybox_image_running(&tar, name, cmd);
        ctrd.ctr_ok(&[
            "images",
            "import",
            "--snapshotter",
            "strata",
            tar.to_str().unwrap(),
        ]);
    }
    let cri = Cri::connect(&ctrd.socket);
    let logs = scratch.path().join("pod-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let config = sandbox_config(&logs);

    let pod: RunPodSandboxResponse = cri
        .call(
            "/runtime.v1.RuntimeService/RunPodSandbox",
            RunPodSandboxRequest {
                config: Some(config.clone()),
            },
        )
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", ctrd.log_tail()));
    let guard = PodGuard {
        cri: &cri,
        id: pod.pod_sandbox_id.clone(),
    };
    let created: CreateContainerResponse = rpc(
        &cri,
        "/runtime.v1.RuntimeService/CreateContainer",
        CreateContainerRequest {
            pod_sandbox_id: pod.pod_sandbox_id.clone(),
            config: Some(ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "writer".into(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: IMAGE.into(),
                }),
                command: vec!["/bin/sh".into()],
                args: vec![
                    "-c".into(),
                    "echo written on strata > /written.part && /bin/busybox mv /written.part /written; exec /bin/busybox sleep 100000".into(),
                ],
                log_path: "writer.log".into(),
            }),
            sandbox_config: Some(config),
        },
    );
    let id = created.container_id;
    let _: Empty = rpc(
        &cri,
        "/runtime.v1.RuntimeService/StartContainer",
        ContainerIdRequest {
            container_id: id.clone(),
        },
    );

    // The file is in the container's root filesystem, a Strata snapshot. It
    // is renamed into place once written: the shell's `>` creates it empty
    // before `echo` runs, and the test read it in between once in CI.
    let rootfs = dir.join(format!(
        "state/io.containerd.runtime.v2.task/k8s.io/{id}/rootfs/written"
    ));
    let text = wait_for("the container's write", || {
        std::fs::read_to_string(&rootfs).ok()
    });
    assert_eq!(text, "written on strata\n");

    let (mountpoint, bytes, inodes) = wait_for("ImageFsInfo with usage", || {
        let info: ImageFsInfoResponse = rpc(&cri, "/runtime.v1.ImageService/ImageFsInfo", Empty {});
        let fs = info.image_filesystems.first()?.figures();
        (fs.1 > 0 && fs.2 > 0).then_some(fs)
    });
    assert_eq!(
        Path::new(&mountpoint),
        strata_root,
        "ImageFsInfo mountpoint"
    );
    assert!(
        Path::new(&mountpoint).is_dir(),
        "{mountpoint} does not exist"
    );
    eprintln!("ImageFsInfo: mountpoint {mountpoint}, {bytes} bytes, {inodes} inodes");

    let (_, layer_bytes, layer_inodes) = wait_for("container stats with usage", || {
        let stats: ContainerStatsResponse = rpc(
            &cri,
            "/runtime.v1.RuntimeService/ContainerStats",
            ContainerIdRequest {
                container_id: id.clone(),
            },
        );
        let layer = stats.stats?.writable_layer?.figures();
        (layer.1 > 0 && layer.2 > 0).then_some(layer)
    });
    eprintln!("ContainerStats writable layer: {layer_bytes} bytes, {layer_inodes} inodes");

    let _: Empty = rpc(
        &cri,
        "/runtime.v1.RuntimeService/StopContainer",
        StopContainerRequest {
            container_id: id.clone(),
            timeout: 5,
        },
    );
    let _: Empty = rpc(
        &cri,
        "/runtime.v1.RuntimeService/RemoveContainer",
        ContainerIdRequest { container_id: id },
    );
    for method in [
        "/runtime.v1.RuntimeService/StopPodSandbox",
        "/runtime.v1.RuntimeService/RemovePodSandbox",
    ] {
        let _: Empty = rpc(
            &cri,
            method,
            SandboxIdRequest {
                pod_sandbox_id: pod.pod_sandbox_id.clone(),
            },
        );
    }
    assert_eq!(ctrd.ctr_ok(&["containers", "ls", "-q"]).trim(), "");
    assert_eq!(ctrd.ctr_ok(&["tasks", "ls", "-q"]).trim(), "");
    let active = ctrd.ctr_ok(&["snapshots", "--snapshotter", "strata", "ls"]);
    assert!(
        !active.lines().any(|l| l.contains("Active")),
        "active snapshots left:\n{active}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let state = dir.join("state").display().to_string();
    assert!(
        !mounts.lines().any(|l| l.contains(&state)),
        "mounts left under {state}"
    );
    drop(guard);
    drop(cri);
    drop(ctrd);
    strata.stop();
}
