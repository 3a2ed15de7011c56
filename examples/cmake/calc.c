/* calc A B prints A + B; anything else fails with status 2. */
#include <stdio.h>
#include <stdlib.h>
#include "sum.h"

int main(int argc, char **argv) {
    char *end1, *end2;
    if (argc != 3) {
        fprintf(stderr, "usage: calc A B\n");
        return 2;
    }
    long a = strtol(argv[1], &end1, 10), b = strtol(argv[2], &end2, 10);
    if (*end1 || *end2) {
        fprintf(stderr, "calc: not numbers\n");
        return 2;
    }
    printf("%ld + %ld = %ld\n", a, b, sum(a, b));
    return 0;
}
