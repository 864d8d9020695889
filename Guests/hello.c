/* hello: the smallest guest. Expected: one line, exit status 33. */
#include "rt.h"

int main(void) {
    printf("hello from the Swiftlet test guest\n");
    return EXIT_SUCCESS_CODE;
}
