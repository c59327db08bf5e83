export const PRODUCT = { name: "Kikoy beach towel", amount: 1450 };
