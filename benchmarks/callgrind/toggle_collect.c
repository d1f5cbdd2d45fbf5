/* Callgrind's CALLGRIND_TOGGLE_COLLECT as a function Python calls through ctypes:
 * counted_gunicorn.conf.py switches collection on and off around each counted request.
 * run.sh builds it: gcc -shared -fPIC -o toggle_collect.so toggle_collect.c */
#include <valgrind/callgrind.h>

void toggle_collect(void) { CALLGRIND_TOGGLE_COLLECT; }
