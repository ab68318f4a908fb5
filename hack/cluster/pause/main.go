// Command pause is the pod sandbox process of the e2e test cluster
// (hack/cluster.sh): it holds the pod's namespaces, reaps the zombies it
// inherits, and exits on SIGINT or SIGTERM. hack/images.sh puts it in the
// localhost/pause image, so the cluster never pulls a sandbox image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

// reap collects every exited child without blocking.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
