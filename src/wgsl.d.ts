declare module '*.wgsl' {
  const code: string;
  export default code;
}
declare module 'wgsl_reflect/wgsl_reflect.module.js' {
  export * from 'wgsl_reflect';
}
