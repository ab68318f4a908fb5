// Package version holds the build's version and source revision. `make
// build` and the image build set both from git:
//
//	-ldflags "-X kafkasend.io/kafkasend/internal/version.Version=v1.2.3
//	          -X kafkasend.io/kafkasend/internal/version.Revision=0123abc"
//
// A binary built without them (go build, go install) falls back to the
// module version and VCS revision Go records in the binary.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Version and Revision of this build, set with -ldflags -X; Get fills them
// from the binary's build information when they are left empty.
var (
	Version  = ""
	Revision = ""
)

// Info is what a binary reports about its build.
type Info struct {
	// Version is the release (a git tag such as v0.2.0, or git describe's
	// v0.2.0-3-g0123abc), or "dev" when nothing better is known.
	Version string
	// Revision is the source commit, or "unknown".
	Revision string
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string
}

// Get returns the build's version information.
func Get() Info {
	return resolve(Version, Revision, readBuildInfo)
}

func readBuildInfo() (*debug.BuildInfo, bool) { return debug.ReadBuildInfo() }

// resolve prefers the linker-set values, then the binary's build
// information, then "dev" and "unknown".
func resolve(v, rev string, read func() (*debug.BuildInfo, bool)) Info {
	info := Info{Version: v, Revision: rev, GoVersion: runtime.Version()}
	if bi, ok := read(); ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		if info.Revision == "" {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" && s.Value != "" {
					info.Revision = s.Value
				}
			}
		}
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	if info.Revision == "" {
		info.Revision = "unknown"
	}
	return info
}

// String is the one line every binary prints for --version:
// "NAME VERSION (revision REVISION, GOVERSION)".
func (i Info) String() string {
	return fmt.Sprintf("%s (revision %s, %s)", i.Version, i.Revision, i.GoVersion)
}

// Line is the --version output of the binary called name.
func Line(name string) string { return name + " " + Get().String() }

// BuildInfoName is the build information metric every binary exports.
const BuildInfoName = "kafkasend_build_info"

// NewCollector returns the gauge kafkasend_build_info{version,revision,goversion},
// always 1, that ties a scraped process to its build.
func NewCollector() prometheus.Collector {
	i := Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        BuildInfoName,
		Help:        "Always 1; its labels name the version, source revision and Go version of the running binary.",
		ConstLabels: prometheus.Labels{"version": i.Version, "revision": i.Revision, "goversion": i.GoVersion},
	})
	g.Set(1)
	return g
}
