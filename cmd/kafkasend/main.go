// Command kafkasend is the requester's command-line client for kafkasend
// portals.
package main

import (
	"fmt"
	"os"
)

const usage = `kafkasend: send REST jobs over Kafka to a kafkasend portal.

Commands:
  demo    run a portal, an upstream and a workload on an embedded broker (not yet available)

Run 'kafkasend COMMAND --help' for a command's options.
`

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		fmt.Print(usage)
		return
	}
	switch os.Args[1] {
	case "demo":
		fmt.Fprintln(os.Stderr, "kafkasend demo: not yet: the demo lands with the requester client (issue 4)")
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "kafkasend: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
}
