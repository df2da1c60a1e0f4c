// ctrd-snapshotter serves one of containerd's own snapshotters (btrfs,
// overlayfs or devmapper, from containerd's packages) directly on a unix
// socket with containerd's snapshots gRPC service, as a proxy snapshotter
// plug-in does: no containerd daemon and no metadata store in between.
// `strata bench --containerd --direct` drives it with the client it uses
// for `strata serve`. Stops on SIGTERM or SIGINT, then closes the
// snapshotter.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/btrfs"
	"github.com/containerd/containerd/snapshots/devmapper"
	"github.com/containerd/containerd/snapshots/overlay"
	"github.com/containerd/containerd/version"
	"google.golang.org/grpc"
)

func main() {
	kind := flag.String("snapshotter", "", "btrfs, overlayfs or devmapper")
	root := flag.String("root", "", "the snapshotter's root directory")
	socket := flag.String("socket", "", "unix socket to serve on")
	pool := flag.String("pool", "", "devmapper: the thin pool's device-mapper name")
	baseSize := flag.String("base-size", "10GB", "devmapper: size of each thin device")
	printVersion := flag.Bool("version", false, "print the containerd version built in and exit")
	flag.Parse()
	if *printVersion {
		fmt.Println(version.Version)
		return
	}
	if *kind == "" || *root == "" || *socket == "" {
		fmt.Fprintln(os.Stderr, "usage: ctrd-snapshotter -snapshotter btrfs|overlayfs|devmapper -root DIR -socket PATH [-pool NAME -base-size SIZE]")
		os.Exit(2)
	}
	if err := serve(*kind, *root, *socket, *pool, *baseSize); err != nil {
		fmt.Fprintf(os.Stderr, "ctrd-snapshotter: %v\n", err)
		os.Exit(1)
	}
}

// open builds the snapshotter as containerd's plug-ins do, except that
// overlayfs removes synchronously (containerd's plug-in defers removal to
// its garbage collector, which nothing runs here).
func open(kind, root, pool, baseSize string) (snapshots.Snapshotter, error) {
	switch kind {
	case "btrfs":
		return btrfs.NewSnapshotter(root)
	case "overlayfs":
		return overlay.NewSnapshotter(root)
	case "devmapper":
		return devmapper.NewSnapshotter(context.Background(), &devmapper.Config{
			RootPath:      root,
			PoolName:      pool,
			BaseImageSize: baseSize,
		})
	}
	return nil, fmt.Errorf("unknown snapshotter %q", kind)
}

func serve(kind, root, socket, pool, baseSize string) error {
	sn, err := open(kind, root, pool, baseSize)
	if err != nil {
		return fmt.Errorf("%s at %s: %w", kind, root, err)
	}
	defer closeQuietly(sn)
	if err := os.Remove(socket); err != nil && !os.IsNotExist(err) {
		return err
	}
	listener, err := net.Listen("unix", socket)
	if err != nil {
		return err
	}
	rpc := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(rpc, snapshotservice.FromSnapshotter(sn))
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		rpc.GracefulStop()
	}()
	return rpc.Serve(listener)
}

func closeQuietly(c io.Closer) {
	if err := c.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "ctrd-snapshotter: close: %v\n", err)
	}
}
