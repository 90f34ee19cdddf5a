/* The layer stack as the target of the ublk queues: the one place where a
 * kernel request becomes a layer request (image/ and kernel/ know nothing
 * of each other). */
#ifndef UBLK_STACK_TARGET_H
#define UBLK_STACK_TARGET_H

#include "image/layer.h"
#include "kernel/queue.h"

/* The target that serves a queue's requests with the stack whose top is top. */
struct queue_target stack_target(struct layer *top);

#endif
