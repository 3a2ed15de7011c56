// Cross-build with the GOOS/GOARCH/GOARM rcross sets, run through the emulator:
//
//	eval "$(rcross env linux/arm/v6)" && go build -o hello-go .
//	rcross run --platform linux/arm/v6 -- ./hello-go
package main

import (
	"fmt"
	"runtime"
)

func main() {
	fmt.Printf("hello from Go, built for %s/%s\n", runtime.GOOS, runtime.GOARCH)
}
