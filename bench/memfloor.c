/* memfloor.c — tinylcm-memfloor: the baseline of `tinylcm-bench
 * satellite-mem`. It does nothing but sleep for argv[1] seconds, and is
 * linked (without --as-needed) against the same shared libraries as the
 * tinylcm binary (tinylcm-memfloor) or as tinylcm before heavy node
 * groups were split off (tinylcm-memfloor-all): so its peak RSS is what
 * loading those libraries costs a process by itself.
 */
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	double s = argc > 1 ? atof(argv[1]) : 1.0;
	usleep((useconds_t)(s * 1e6));
	return 0;
}
