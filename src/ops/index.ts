/** Op re-exports: one line per op file. */
export { scaledDotProductAttention, multiHeadAttention, type AttentionOptions } from './attention.js';
export { fmboostAttention } from './fmboost-attention.js';
