/** cluster: a fleet of nodes sharing the receivers' limits through Redis (docs/scaling.md). */
export { openBoard, BOARD_LIMITS, type Board, type BoardEntry } from './board.ts';
export { FleetLimiter, FLEET_LIMITS, shareOf } from './fleet-limiter.ts';
export { CLUSTER_LIMITS, clusterCheck, openMembership, redacted, type ClusterOptions, type ClusterView, type Membership, type NodeView, type RedisState } from './membership.ts';
